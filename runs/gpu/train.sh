#!/usr/bin/env bash
# Train the deep RCAN ×2 on one GPU for a fixed budget, in one command.
#
#   Before:       the training images in .train_data/T91 and .train_data/BSD200 (ignored by git; as lossless
#                 WebP they are 41.5 MB)
#   On the GPU:   bash runs/gpu/train.sh            (ends by itself in under 10 minutes)
#
# Starts from INIT (default: the shipped deep weights; any canonical file or training checkpoint) with a new
# schedule (--steps fit: after timing its first steps the run sizes a warm-up + cosine schedule to end where
# the budget does), bfloat16 convolutions, the batch split over every GPU; stops by itself after BUDGET
# seconds (data, compile, training, the final Set5 validation and save included) and writes into $OUT:
# deep_x2.ckpt, the weights rcan_deep_x2.safetensors, train.json (steps, Set5 PSNR, patches/s, share of peak)
# and log.txt. The shipped weights came from this script on one H100 (BUDGET=550, INIT: 543 CPU steps),
# log in runs/measurements/gpu_h100/ (LR 3e-4; from random weights LR=1e-3 trained faster in
# runs/gpu/compare.sh). The checkpoint holds the float32 weights without Adam's moments (16.4 MB, like
# the weights).
set -u
O=${OUT:-/tmp/gpu_out}
mkdir -p "$O"
BUDGET=${BUDGET:-500}
DATA=${DATA:-.train_data}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false
{ date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} > "$O/log.txt" 2>&1
cat "$O/log.txt"
# Other configurations for a comparison per device-minute: PRESET (a preset of accel.train), CONFIG (its
# RCANConfig fields as JSON, e.g. '{"n_resgroups": 10, "n_resblocks": 20}'), BATCH, LR, WARMUP; INIT= (empty)
# starts from random weights. The real-photo model: DEGRADE=photo (a chain of accel/degrade/chain.py; the
# held-out photos of runs/real/holdout.txt are then left out too) and EMA=0.999, e.g.
#   DEGRADE=photo EMA=0.999 INIT=accel/weights/rcan_real_x2.safetensors LR=1e-4 WARMUP=100 bash runs/gpu/train.sh
PRESET=${PRESET:-deep}
EXCLUDE=(302003 ${DEGRADE:+$(cat runs/real/holdout.txt)})
INIT=${INIT-accel/weights/rcan_deep_x2.safetensors}
SCHEDULE=(${INIT:+--init "$INIT"} --preset "$PRESET" ${CONFIG:+--config "$CONFIG"} --steps fit
          --batch "${BATCH:-32}" --lr "${LR:-3e-4}" --warmup "${WARMUP:-300}" --seed 1
          ${DEGRADE:+--degrade "$DEGRADE"} ${EMA:+--ema "$EMA"})
timeout $((BUDGET + 60)) $PY -m accel.train --data "$DATA/T91" "$DATA/BSD200" --exclude "${EXCLUDE[@]}" "${SCHEDULE[@]}" \
    --checkpoint "$O/deep_x2.ckpt" --moments none --out "$O/rcan_deep_x2.safetensors" \
    --dtype bfloat16 --time-budget "$BUDGET" --every "${EVERY:-4000}" --val-hr tests/data/Set5/HR_x2 --quiet \
    > "$O/train.json" 2>> "$O/log.txt"
echo "rc=$? $(date)" >> "$O/log.txt"
tail -n 30 "$O/log.txt"
cat "$O/train.json"
