#!/usr/bin/env bash
# The evaluation protocol of docs/evaluation.md, end to end:
#   simulate training + calibration (seed 1) -> train one model per forest seed ->
#   simulate the evaluation day for each simulator seed -> `flowsentry eval --json` for
#   every (forest seed, simulator seed) -> summary table (mean, min, max over the runs).
# Usage: scripts/evaluate.sh [BIN] [OUT]   (defaults: target/release/flowsentry, target/eval)
# Env: FOREST_SEEDS="1 2 3 4 5"  SIM_SEEDS="2 3 4"  TARGET_FPR=0.001  CALIBRATION_CONFIDENCE=0.95
# Disk: ~4 GB per evaluation capture plus ~7.5 GB for training + calibration.
set -euo pipefail
BIN="${1:-target/release/flowsentry}"
OUT="${2:-target/eval}"
FOREST_SEEDS="${FOREST_SEEDS:-1 2 3 4 5}"
SIM_SEEDS="${SIM_SEEDS:-2 3 4}"
TARGET_FPR="${TARGET_FPR:-0.001}"
# As `make models`: thresholds at the target FPR with this confidence ("" = plain quantile).
CALIBRATION_CONFIDENCE="${CALIBRATION_CONFIDENCE-0.95}"
CONF_ARGS=()
[ -n "$CALIBRATION_CONFIDENCE" ] && CONF_ARGS=(--calibration-confidence "$CALIBRATION_CONFIDENCE")
mkdir -p "$OUT"
for s in training calibration; do
  [ -f "$OUT/$s/capture.pcap" ] || "$BIN" simulate --scenario "$s" --seed 1 --out "$OUT/$s"
done
for f in $FOREST_SEEDS; do
  [ -f "$OUT/model-$f.fsm" ] || "$BIN" train --pcap "$OUT/training/capture.pcap" \
    --inventory "$OUT/training/inventory.toml" --calibrate "$OUT/calibration/capture.pcap" \
    --target-fpr "$TARGET_FPR" "${CONF_ARGS[@]}" --seed "$f" --out "$OUT/model-$f.fsm" > "$OUT/train-$f.txt"
done
for e in $SIM_SEEDS; do
  [ -f "$OUT/eval-$e/capture.pcap" ] || "$BIN" simulate --scenario evaluation --seed "$e" --out "$OUT/eval-$e"
  for f in $FOREST_SEEDS; do
    [ -f "$OUT/report-f$f-e$e.json" ] || "$BIN" eval --model "$OUT/model-$f.fsm" \
      --pcap "$OUT/eval-$e/capture.pcap" --labels "$OUT/eval-$e/labels.jsonl" --json \
      > "$OUT/report-f$f-e$e.json"
  done
done
python3 - "$OUT" <<'EOF'
import glob, json, sys, statistics as st
out = sys.argv[1]
reports = [json.load(open(p)) for p in sorted(glob.glob(f"{out}/report-f*-e*.json"))]
print(f"{len(reports)} runs (forest seeds x simulator seeds)\n")
def agg(vals, p=4):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    return f"{st.mean(vals):.{p}f} [{min(vals):.{p}f}, {max(vals):.{p}f}]"
modes = [m["mode"] for m in reports[0]["modes"]]
print("| mode | ROC-AUC | PR-AUC | TPR@0.1% | min episode recall | false incidents / device / day | benign FPR at thresholds |")
print("|---|---|---|---|---|---|---|")
for i, mode in enumerate(modes):
    ms = [r["modes"][i] for r in reports]
    print(f"| {mode} | {agg([m['pooled']['roc_auc'] for m in ms], 6)} | {agg([m['pooled']['pr_auc'] for m in ms], 6)} "
          f"| {agg([m['pooled']['tpr_at_fpr_0_1pct'] for m in ms])} | {agg([m['min_episode_recall'] for m in ms])} "
          f"| {agg([m['triage']['false_incidents_per_device_day'] for m in ms])} | {agg([m['pooled']['fpr'] for m in ms])} |")
print("\nAt the operating thresholds (what the triage queue sees):\n")
print("| mode | attack flows alerted (TPR) | benign flows alerted (FPR) | false alerts / device / day | incidents | false incidents |")
print("|---|---|---|---|---|---|")
for i, mode in enumerate(modes):
    ms = [r["modes"][i] for r in reports]
    print(f"| {mode} | {agg([m['pooled']['tpr'] for m in ms])} | {agg([m['pooled']['fpr'] for m in ms])} "
          f"| {agg([m['triage']['false_alerts_per_device_day'] for m in ms], 2)} | {agg([m['triage']['incidents'] for m in ms], 1)} "
          f"| {sum(m['triage']['false_incidents'] for m in ms)} |")
print("\nAt the baseline's false-alert rate (each mode's thresholds shifted by one margin so that")
print("at most as many benign flows pass as its baseline alerts at its calibrated thresholds):\n")
print("| mode | baseline | baseline FPR | baseline TPR | baseline TPR, its thresholds shifted | TPR at that FPR | runs where TPR > baseline TPR (shifted) |")
print("|---|---|---|---|---|---|---|")
for i, mode in enumerate(modes):
    ms = [r["modes"][i].get("matched") for r in reports]
    ms = [m for m in ms if m]
    if not ms:
        continue
    wins = sum(1 for m in ms if m["tpr"] > m["baseline_tpr"])
    wins_shifted = sum(1 for m in ms if m["tpr"] > m["baseline_shifted_tpr"])
    print(f"| {mode} | {ms[0]['baseline']} | {agg([m['baseline_fpr'] for m in ms])} | {agg([m['baseline_tpr'] for m in ms])} "
          f"| {agg([m['baseline_shifted_tpr'] for m in ms])} | {agg([m['tpr'] for m in ms])} | {wins} ({wins_shifted}) of {len(ms)} |")
print("\nForest against forest, paired by run (per-class-forest vs global-forest):\n")
pi = modes.index("per-class-forest") if "per-class-forest" in modes else None
gi = modes.index("global-forest") if "global-forest" in modes else None
if pi is not None and gi is not None:
    for key, name in [("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC"), ("tpr_at_fpr_0_1pct", "TPR@0.1%")]:
        pairs = [(r["modes"][pi]["pooled"][key], r["modes"][gi]["pooled"][key]) for r in reports]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        wins = sum(1 for a, b in pairs if a > b)
        print(f"- {name}: per-class-forest higher in {wins} of {len(pairs)} runs; "
              f"difference {agg([a - b for a, b in pairs], 6)}")
print("\nFalse alerts by detector (sum over the runs), and how many of them were on a device under attack:\n")
print("| mode | false alerts by detector | on devices under attack | outside attacks / device / day | alerts on unlabelled records |")
print("|---|---|---|---|---|")
for i, mode in enumerate(modes):
    tot = {}
    for r in reports:
        for k, v in r["modes"][i]["triage"].get("false_alerts_by_detector", {}).items():
            tot[k] = tot.get(k, 0) + v
    under = sum(r["modes"][i]["triage"].get("false_alerts_under_attack", 0) for r in reports)
    outside = agg([r["modes"][i]["triage"].get("false_alerts_outside_attacks_per_device_day") for r in reports], 2)
    unl = sum(r["modes"][i]["triage"].get("unlabelled_alerts", 0) for r in reports)
    print(f"| {mode} | " + ", ".join(f"{k} {v}" for k, v in sorted(tot.items())) + f" | {under} | {outside} | {unl} |")
print("\nFlow TPR at the operating thresholds, per attack:\n")
kinds = sorted(reports[0]["modes"][0]["per_attack"])
print("| attack | " + " | ".join(modes) + " |")
print("|---|" + "---|" * len(modes))
for k in kinds:
    cells = [agg([r["modes"][i]["per_attack"][k]["flows"]["tpr"] for r in reports if k in r["modes"][i]["per_attack"]]) for i, _ in enumerate(modes)]
    print(f"| {k} | " + " | ".join(cells) + " |")
print(f"\nbase rate (attack share of flows): {agg([r['modes'][0]['pooled']['base_rate'] for r in reports])}")
for i, mode in enumerate(modes[:1]):
    print(f"\nPer attack, mode {mode}:\n")
    print("| attack | episodes (all runs) | episode recall | alerts / episode | TTD median s | TTD p95 s | flow ROC-AUC |")
    print("|---|---|---|---|---|---|---|")
    kinds = sorted(reports[0]["modes"][i]["per_attack"])
    for k in kinds:
        a = [r["modes"][i]["per_attack"][k] for r in reports if k in r["modes"][i]["per_attack"]]
        print(f"| {k} | {sum(x['episodes'] for x in a)} | {agg([x['episode_recall'] for x in a])} "
              f"| {agg([x['alerts_per_episode'] for x in a])} | {agg([x['ttd_median_s'] for x in a])} "
              f"| {agg([x['ttd_p95_s'] for x in a])} | {agg([x['flows']['roc_auc'] for x in a], 6)} |")
    print(f"\nPer class, mode {mode}:\n")
    print("| class | ROC-AUC | TPR@0.1% | benign FPR at thresholds | false incidents (sum) |")
    print("|---|---|---|---|---|")
    for c in sorted(reports[0]["modes"][i]["per_class"]):
        pc = [r["modes"][i]["per_class"][c] for r in reports if c in r["modes"][i]["per_class"]]
        fi = sum(r["modes"][i]["triage"]["false_incidents_by_class"].get(c, 0) for r in reports)
        print(f"| {c} | {agg([x['roc_auc'] for x in pc], 6)} | {agg([x['tpr_at_fpr_0_1pct'] for x in pc])} | {agg([x['fpr'] for x in pc])} | {fi} |")
print("\nPer class, flow ROC-AUC in every mode:\n")
print("| class | " + " | ".join(modes) + " |")
print("|---|" + "---|" * len(modes))
for c in sorted(reports[0]["modes"][0]["per_class"]):
    cells = []
    for i, _ in enumerate(modes):
        cells.append(agg([r["modes"][i]["per_class"][c]["roc_auc"] for r in reports if c in r["modes"][i]["per_class"]], 6))
    print(f"| {c} | " + " | ".join(cells) + " |")
EOF
