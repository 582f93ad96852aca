#!/usr/bin/env bash
# Fine-tune a real-photo model on a milder chain of accel/degrade/chain.py CHAINS ("photo" unless DEGRADE
# names another), from the shipped real weights (PRESET=compact: real-compact's), for a fixed time budget with
# the schedule fitted to it. Resumable: run it again and it continues from its checkpoint.
#   [DEGRADE=mild] [PRESET=compact] bash runs/real/train_photo.sh [seconds] [init weights]
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/train}
HOLDOUT=$(cat runs/real/holdout.txt)   # photos kept out of every fine-tune: the held-out degraded set
mkdir -p runs/real/ckpt
chain=${DEGRADE:-photo}
preset=${PRESET:-deep}
if [ "$preset" = deep ]; then name=real batch=8; else name=real_compact batch=16; fi
ckpt=runs/real/ckpt/rcan_${name}_${chain}_x2.ckpt
out=runs/real/rcan_${name}_${chain}_x2.safetensors
data=(--data "$DATA/T91" "$DATA/BSD200" --exclude 302003 $HOLDOUT)
if [ -f "$ckpt" ]; then
  python -m accel.train "${data[@]}" --checkpoint "$ckpt" --out "$out" --val-hr tests/data/Set5/HR_x2 --quiet \
    --moments bfloat16 --time-budget "${1:-5700}"
else
  python -m accel.train "${data[@]}" --preset "$preset" --init "${2:-accel/weights/rcan_${name}_x2.safetensors}" \
    --degrade "$chain" --ema 0.999 --steps fit --time-budget "${1:-5700}" --lr 1e-4 --warmup 50 --batch "$batch" \
    --patch 48 --every 100 --checkpoint "$ckpt" --out "$out" --val-hr tests/data/Set5/HR_x2 --quiet --moments bfloat16
fi
