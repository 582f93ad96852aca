#!/usr/bin/env bash
# The CPU measurements of accel/PERFORMANCE.md and the model card, on an otherwise idle machine
# (files in runs/measurements/; the GPU ones: `bash runs/gpu/measure.sh` on a GPU machine).
set -x
cd "$(dirname "$0")/.."
PY=${PY:-python}
out=runs/measurements
mkdir -p $out
$PY -m tools.card accel/weights/rcan_compact_x2.safetensors --hr tests/data/Set5/HR_x2 > $out/card.txt
$PY -m tools.card accel/weights/rcan_deep_x2.safetensors --hr tests/data/Set5/HR_x2 > $out/card_deep.txt
# Set5 through the upscale CLI with the default (deep) model, scored with the paper's protocol.
rm -rf /tmp/set5_up && $PY -m accel.upscale tests/data/Set5/LR_x2 -o /tmp/set5_up/ --quiet
$PY -m accel.evaluate --hr tests/data/Set5/HR_x2 --sr /tmp/set5_up --scale 2 > $out/set5_via_upscale.txt 2>&1
$PY -m accel.bench --models official compact --sizes 64 128 256 --repeats 3 --rounds 2 --json > $out/bench.json
$PY -m accel.bench --table $out/bench.json > $out/bench.txt
$PY -m accel.bench --compile --models official compact --sizes 64 > $out/compile.json
$PY -m accel.bench --conv-channels 64 --sizes 32 64 96 128 192 256 > $out/conv_paths_c64.json
$PY -m accel.bench --conv-channels 32 --sizes 64 128 256 512 > $out/conv_paths_c32.json
$PY -m accel.bench --upscale 2000x1500 > $out/upscale_shipped_2000x1500.json   # every shipped model, vs compact
$PY -m accel.evaluate --hr tests/data/Set5/HR_x2 --scale 2 --model compact --json > $out/set5_float32.json 2>/dev/null
$PY -m accel.evaluate --hr tests/data/Set5/HR_x2 --scale 2 --dtype bfloat16 --model compact --json > $out/set5_bfloat16.json 2>/dev/null
$PY -m accel.evaluate --hr tests/data/Set5/HR_x2 --scale 2 --ensemble --model compact --json > $out/set5_ensemble.json 2>/dev/null
$PY -m accel.bench --upscale 2000x1500 --weights ${OFFICIAL_SIZE_WEIGHTS:-/tmp/full.safetensors} > $out/upscale_official_2000x1500.json
# The first run on an empty cache (compile + timing the convolution paths), and the Winograd experiments.
RCAN_JAX_CACHE=$(mktemp -d) $PY -m accel.bench --upscale 2000x1500 --upscale-args "--model compact" > $out/upscale_compact_2000x1500_cold.json
(cd runs/experiments && PYTHONPATH=../.. $PY winograd_gemm.py && S=256 PYTHONPATH=../.. $PY winograd_strips.py) > $out/winograd_experiments.txt
