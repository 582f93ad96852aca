"""Write the model card of a trained weights file: its config, training record and Set5 scores.

    python -m tools.card accel/weights/rcan_compact_x2.safetensors --hr tests/data/Set5/HR_x2

Scores use the paper's protocol (accel.evaluate): LR made from HR with MATLAB's bicubic, the model's
output quantized like the official code, PSNR/SSIM on Y with the border shaved; bicubic beside it.
Writes MODEL_CARD.md and model_card.json next to the weights.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from accel import hardware
from accel.api import model_from_weights
from accel.evaluate import evaluate_model, table
from reference.explain import SOURCES
from reference.weights import load_weights, read_metadata

PAPER_SET5 = SOURCES["rcan_paper_table"]["rcan"]   # the RCAN paper's Set5 PSNR per scale (BI)


def build_card(weights_path, hr_dir) -> tuple[dict, str]:
    weights, config = load_weights(weights_path)
    meta = read_metadata(weights_path)
    model = model_from_weights(weights, config)
    result = evaluate_model(hr_dir, config.scale, model, progress=False)
    params = int(sum(v.size for v in weights.values()))
    hours = float(meta.get("train_seconds", 0)) / 3600
    data = " + ".join(Path(d).name for d in meta.get("data", "").split())   # folder names, not local paths
    card = {
        "file": Path(weights_path).name, "config": json.loads(config.to_json()), "parameters": params,
        "training": {**{k: meta.get(k) for k in ("steps", "batch", "patch", "peak_lr", "seed", "exclude",
                                                 "n_train_images", "train_seconds")}, "data": data},
        "machine": f"{hardware.describe_cpu()} (CPU only)",
        f"set5_x{config.scale}": {"psnr": round(result["mean"]["psnr"], 4), "ssim": round(result["mean"]["ssim"], 4),
                                  "bicubic_psnr": round(result["bicubic"]["psnr"], 4),
                                  "bicubic_ssim": round(result["bicubic"]["ssim"], 4),
                                  "images": {r["name"]: round(r["psnr"], 4) for r in result["images"]}},
    }
    s = config.scale
    md = f"""# Model card: {card['file']}

The compact RCAN ×{s} that `python -m accel.upscale` uses when no `--weights` is given. Trained by this
project on CPU, from scratch, with `python -m accel.train`; the same architecture as the official RCAN
(same module tree and key names), smaller.

| | |
|---|---|
| config | {config.n_resgroups} residual groups × {config.n_resblocks} RCABs, {config.n_feats} features, reduction {config.reduction}, ×{s} |
| parameters | {params:,} (the official RCAN: 15,444,667) |
| data | {data} — {meta.get('n_train_images', '?')} images (left out: {meta.get('exclude') or 'none'}; BSD200/302003 is the source of Set5's woman) |
| training | {meta.get('steps', '?')} steps of {meta.get('batch', '?')} LR patches {meta.get('patch', '?')}×{meta.get('patch', '?')} (MATLAB-bicubic LR, flips and 90° turns), L1 loss, Adam, peak LR {meta.get('peak_lr', '?')} with warm-up and cosine decay, seed {meta.get('seed', '?')} |
| wall time | {hours:.2f} h of training on {card['machine']}, shared with other work |

## Scores (Set5 ×{s}, the paper's protocol: Y channel, {s}-pixel border shaved)

| | PSNR | SSIM |
|---|---|---|
| this model | **{card[f'set5_x{s}']['psnr']:.2f} dB** | {card[f'set5_x{s}']['ssim']:.4f} |
| bicubic | {card[f'set5_x{s}']['bicubic_psnr']:.2f} dB | {card[f'set5_x{s}']['bicubic_ssim']:.4f} |
| official RCAN (paper; 15.4 M parameters) | {PAPER_SET5.get(str(s), '-')} dB | |

Per image:

```
{table(result)}
```

Reproduce: `python -m accel.evaluate --hr tests/data/Set5/HR_x{s} --scale {s}` (the shipped model is
the default), or upscale the official LR files with `python -m accel.upscale tests/data/Set5/LR_x{s} -o out/`
and score them with `python -m accel.evaluate --hr tests/data/Set5/HR_x{s} --sr out --scale {s}`.
Regenerate this card: `python -m tools.card {weights_path} --hr tests/data/Set5/HR_x{s}`.

Honest limits: trained on {meta.get('n_train_images', '?')} small images for a short CPU budget, it is well below the official
model; it is meant to make the tool work out of the box. For the paper's quality, convert an official
checkpoint (`python -m weights_convert RCAN_BIX2.pt -o rcan_x2.safetensors`) and pass `--weights`.
"""
    return card, md


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.card", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", help="canonical weights file")
    ap.add_argument("--hr", required=True, help="Set5 HR folder for the scores")
    args = ap.parse_args(argv)
    card, md = build_card(args.weights, args.hr)
    folder = Path(args.weights).parent
    (folder / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    (folder / "MODEL_CARD.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
