#!/usr/bin/env bash
# Live-capture benchmark (issue 5): replays a capture with tcpreplay into a veth pair in a
# private network namespace at increasing rates while `flowsentry live` captures the other
# end, and reports per rate: frames captured, kernel drops, queue_full drops and the
# packet-to-event latency percentiles from the final stats event. Needs root, iproute2,
# tcpreplay and a release build. Traffic never leaves the namespace.
#   usage: scripts/bench-live.sh [PCAP] [RATES...]
set -euo pipefail
BIN=${BIN:-target/release/flowsentry}
PCAP=${1:-target/bench-data/live-source.pcap}
shift || true
RATES=${*:-"20000 50000 100000 200000 400000 top"}
NS=fs-bench-$$
cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT
if [ ! -f "$PCAP" ]; then
  mkdir -p "$(dirname "$PCAP")"
  "$BIN" simulate --scenario bench --seed 3 --packets 400000 --out target/bench-data/live-src >/dev/null
  mv target/bench-data/live-src/capture.pcap "$PCAP"
fi
ip netns add "$NS"
ip netns exec "$NS" ip link add veth0 type veth peer name veth1
for d in veth0 veth1; do
  ip netns exec "$NS" sysctl -qw "net.ipv6.conf.$d.disable_ipv6=1"
  ip netns exec "$NS" ip link set "$d" mtu 9000 up
done
printf "%-8s %10s %10s %10s %8s %10s %9s %9s %9s %9s\n" rate achieved_pps sent captured kernel queuefull p50_us p99_us p999_us max_us
for r in $RATES; do
  out=$(mktemp)
  ip netns exec "$NS" "$BIN" live -i veth1 --buffer-mb 256 --stats-interval 3600 --out "$out" \
     ${LIVE_ARGS:-} 2>/dev/null &
  pid=$!
  for _ in $(seq 100); do grep -q stats "$out" 2>/dev/null && break; sleep 0.1; done
  if [ "$r" = top ]; then speed=(--topspeed); else speed=(--pps "$r"); fi
  rep=$(ip netns exec "$NS" tcpreplay -q -i veth0 --loop "${LOOP:-1}" "${speed[@]}" "$PCAP" 2>&1)
  sent=$(echo "$rep" | awk '/^Actual/{print $2}')
  pps=$(echo "$rep" | awk '/^Rated/{for(i=1;i<=NF;i++) if($i=="pps") print int($(i-1))}')
  sleep 1
  kill -TERM "$pid"; wait "$pid" || true
  tail -1 "$out" | python3 -c "
import sys, json
s = json.load(sys.stdin)['stats']
lat = s.get('latency', {}).get('packet_to_event_us', {})
print('%-8s %10s %10s %10d %8d %10d %9d %9d %9d %9d' % ('$r', '$pps', '$sent', s['frames'], s['capture']['dropped'] + s['capture']['if_dropped'], sum(s.get('queue_full', [])), lat.get('p50', 0), lat.get('p99', 0), lat.get('p999', 0), lat.get('max', 0)))"
  rm -f "$out"
done
