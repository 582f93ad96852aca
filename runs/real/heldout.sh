#!/usr/bin/env bash
# The held-out degraded set and the real-photo models' numbers (model cards, README "Which model").
#   bash runs/real/heldout.sh            # builds runs/real/heldout/ and writes runs/measurements/real/
#   MODELS=real bash runs/real/heldout.sh   # only the models named (the others' files are kept)
# The set: Set5 (tests/data) and the 20 BSD200 photos of runs/real/holdout.txt, which every fine-tune left out;
# each made into a blurred, noisy JPEG by `accel.evaluate --degrade` (seed 0, accel/degrade/testset.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/train}
SET=runs/real/heldout OUT=runs/measurements/real
mkdir -p "$SET" "$OUT"
cp tests/data/Set5/HR_x2/*.png "$SET"/
for id in $(cat runs/real/holdout.txt); do cp "$DATA/BSD200/$id.png" "$SET"/; done
for model in ${MODELS:-deep compact real real-compact}; do
  python -m accel.evaluate --hr "$SET" --scale 2 --degrade --model "$model" --json --quiet > "$OUT/degraded_$model.json"
  python -m accel.evaluate --hr tests/data/Set5/HR_x2 --scale 2 --model "$model" --json --quiet > "$OUT/set5_$model.json"
done
# The default CLI on the JPEG files themselves, as a user runs it: one command, no flags but the output.
rm -rf runs/real/heldout_jpeg runs/real/heldout_sr
python -m accel.evaluate --hr "$SET" --scale 2 --degrade --save-lr runs/real/heldout_jpeg --json --quiet \
  > "$OUT/degraded_auto.json"
start=$(date +%s%N)
python -m accel.upscale runs/real/heldout_jpeg -o runs/real/heldout_sr/ --format png --json > "$OUT/cli_rows.jsonl"
echo "wall $(( ($(date +%s%N) - start) / 1000000 )) ms for the whole command, 25 images" > "$OUT/cli_time.txt"
python -m accel.evaluate --hr "$SET" --sr runs/real/heldout_sr --scale 2 --json > "$OUT/degraded_cli.json"
python runs/real/summary.py "$OUT" | tee "$OUT/summary.md"
