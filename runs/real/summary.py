"""The held-out table from runs/real/heldout.sh's JSON files: python runs/real/summary.py runs/measurements/real"""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
load = lambda name: json.loads((out / f"{name}.json").read_text())  # noqa: E731
print("| model | clean Set5 ×2 | degraded held-out (25 photos) | beats bicubic |")
print("|---|---|---|---|")
bic = load("degraded_deep")["bicubic"]["psnr"]
for model in ("deep", "compact", "real", "real-compact"):
    d, c = load(f"degraded_{model}"), load(f"set5_{model}")
    print(f"| {model} | {c['mean']['psnr']:.2f} | {d['mean']['psnr']:.2f} ({d['mean']['psnr'] - bic:+.2f}) | "
          f"{100 * d['beats_bicubic']:.0f} % |")
print(f"| bicubic | {load('set5_deep')['bicubic']['psnr']:.2f} | {bic:.2f} | |")
cli = load("degraded_cli")
print(f"\nThe default CLI on the JPEG files (`rcan-upscale DIR -o OUT --format png`): {cli['mean']['psnr']:.2f} dB, "
      f"{cli['mean']['psnr'] - load('degraded_deep')['mean']['psnr']:+.2f} dB against the deep model "
      f"({(out / 'cli_time.txt').read_text().strip()})")
