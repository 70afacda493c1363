#!/usr/bin/env bash
# Regenerates fixtures/pcaps byte-for-byte from the simulator.
# Usage: scripts/make-fixtures.sh path/to/flowsentry   (make fixtures passes target/release/flowsentry)
set -euo pipefail
BIN="${1:?usage: $0 path/to/flowsentry}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/fixtures/pcaps"
SEED=1   # every fixture uses seed 1 (tests/sim_determinism.rs checks this)
SCENARIOS=(
  fixture-benign-camera fixture-benign-thermostat fixture-benign-plc fixture-benign-plug
  fixture-benign-hub fixture-mirai fixture-floods fixture-portscan fixture-exfil-beacon
  fixture-dns-tunnel fixture-modbus-write fixture-arp-spoof
)
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"
for s in "${SCENARIOS[@]}"; do
  "$BIN" simulate --scenario "$s" --seed "$SEED" --out "$TMP/$s"
  cp "$TMP/$s/capture.pcap"    "$OUT/$s.pcap"
  cp "$TMP/$s/labels.jsonl"    "$OUT/$s.labels.jsonl"
  cp "$TMP/$s/episodes.jsonl"  "$OUT/$s.episodes.jsonl"
  cp "$TMP/$s/inventory.toml"  "$OUT/$s.inventory.toml"
done
du -sh "$OUT"
