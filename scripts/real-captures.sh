#!/usr/bin/env bash
# Replays every capture under ../shared/pcaps/{benign,attacks,iot} with the built-in default
# model and no inventory (classes are inferred), and prints per folder: files, files that
# read without error, flows, anomaly events by detector, incidents (docs/evaluation.md,
# "Real captures").
set -uo pipefail
BIN="${1:-target/release/flowsentry}"
SHARED="${2:-../shared/pcaps}"
for top in benign attacks iot; do
  find "$SHARED/$top" -type f \( -name '*.pcap' -o -name '*.pcapng' -o -name '*.cap' \) | sort
done | while read -r f; do
  out=$("$BIN" replay --no-progress --out - "$f" 2>/dev/null); rc=$?
  printf '%s\t%s\t' "${f#$SHARED/}" "$rc"
  printf '%s\n' "$out" | python3 -c '
import sys, json, collections
flows = 0; det = collections.Counter(); inc = 0
for line in sys.stdin:
    try: v = json.loads(line)
    except ValueError: continue
    t = v.get("event_type")
    if t == "flow": flows += 1
    elif t == "anomaly": det[v.get("detector")] += 1
    elif t == "incident": inc += 1
print(flows, inc, " ".join(f"{k}={n}" for k, n in sorted(det.items())), sep="\t")'
done
