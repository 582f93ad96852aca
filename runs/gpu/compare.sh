#!/usr/bin/env bash
# Which RCAN to train on a GPU: quality reached per device-minute. Each configuration trains from random
# weights for the same BUDGET seconds of wall time (data, compile, training and the final Set5 validation
# all count; runs/gpu/train.sh with a schedule fitted to the budget), one after the other on one GPU.
#
#   Before:       the training images in .train_data/ (as for runs/gpu/train.sh)
#   On the GPU:   BUDGET=85 bash runs/gpu/compare.sh      (5 configurations: about 5 × (BUDGET + 10) s)
#
# Compilation counts as in any real run, so the order matters: a run whose shapes an earlier run compiled
# (the persistent cache) starts sooner (G5R10F64 on an H100: 16 s cold, 2 s cached), and trains longer.
# Writes $OUT/compare.jsonl (one line per configuration: its name and settings, then train.sh's train.json:
# steps, Set5 PSNR, patches/s, share of peak) and $OUT/compare_log.txt; weights and checkpoints stay in /tmp.
set -u
O=${OUT:-/tmp/gpu_out}
mkdir -p "$O"
export BUDGET=${BUDGET:-85} WARMUP=${WARMUP:-100} EVERY=${EVERY:-1000000} INIT=
: > "$O/compare.jsonl"
#     name            preset    CONFIG (over the preset)                      batch  peak LR
RUNS=("G5R10F64        deep      {}                                            32     3e-4"
      "G10R10F64       deep      {\"n_resgroups\":10}                          32     3e-4"
      "G10R20F64       official  {}                                            32     3e-4"
      "G5R10F64-b64    deep      {}                                            64     3e-4"
      "G5R10F64-lr1e-3 deep      {}                                            32     1e-3")
for run in "${RUNS[@]}"; do
  read -r name preset config batch lr <<< "$run"
  echo "== $name $(date +%T)" | tee -a "$O/compare_log.txt"
  OUT=/tmp/compare/$name PRESET=$preset CONFIG=$config BATCH=$batch LR=$lr bash runs/gpu/train.sh > /dev/null 2>&1
  cat "/tmp/compare/$name/log.txt" >> "$O/compare_log.txt"
  result=$(tail -n 1 "/tmp/compare/$name/train.json" 2>/dev/null)
  ${PY:-python3} -c 'import json, sys
name, preset, config, batch, lr, budget, result = sys.argv[1:]
row = {"name": name, "preset": preset, "config": json.loads(config), "batch": int(batch), "peak_lr": float(lr),
       "budget_s": float(budget)}
try:
    row.update(json.loads(result))
except ValueError:
    row["error"] = "no train.json (see compare_log.txt)"
print(json.dumps(row))' "$name" "$preset" "$config" "$batch" "$lr" "$BUDGET" "$result" | tee -a "$O/compare.jsonl"
done
echo "== done $(date +%T)" | tee -a "$O/compare_log.txt"
