#!/usr/bin/env bash
# Fine-tune the shipped bicubic models into the real-photo ones on a CPU, one after the other, each for a
# fixed time budget (the schedule fitted to it). Resumable: run it again and each continues from its
# checkpoint (or is skipped when its checkpoint has finished its schedule).
#   bash runs/real/train_cpu.sh [compact_seconds] [deep_seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/train}
HOLDOUT=$(cat runs/real/holdout.txt)   # photos kept out of every fine-tune: the held-out degraded set
mkdir -p runs/real/ckpt
common=(--data "$DATA/T91" "$DATA/BSD200" --exclude 302003 $HOLDOUT --degrade real --ema 0.999
        --val-hr tests/data/Set5/HR_x2 --quiet --moments bfloat16)
run() {   # name preset init budget extra...
  local name=$1 preset=$2 init=$3 budget=$4; shift 4
  local ckpt=runs/real/ckpt/$name.ckpt
  if [ -f "$ckpt" ]; then   # resume with the checkpoint's own schedule
    python -m accel.train "${common[@]:0:3}" --exclude 302003 $HOLDOUT --checkpoint "$ckpt" \
      --out "runs/real/$name.safetensors" --val-hr tests/data/Set5/HR_x2 --quiet --moments bfloat16 --time-budget "$budget"
  else
    python -m accel.train "${common[@]}" --preset "$preset" --init "$init" --steps fit --time-budget "$budget" \
      --checkpoint "$ckpt" --out "runs/real/$name.safetensors" "$@"
  fi
}
run rcan_real_compact_x2 compact accel/weights/rcan_compact_x2.safetensors "${1:-2700}" --lr 2e-4 --warmup 100 --every 250
run rcan_real_x2 deep accel/weights/rcan_deep_x2.safetensors "${2:-4000}" --lr 1e-4 --warmup 50 --batch 8 --patch 32 --every 100
