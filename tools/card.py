"""Write the model card of a trained weights file: its config, training record and Set5 scores.

    python -m tools.card accel/weights/rcan_compact_x2.safetensors --hr tests/data/Set5/HR_x2
    python -m tools.card accel/weights/rcan_real_x2.safetensors --hr tests/data/Set5/HR_x2 \
        --heldout runs/real/heldout      # real-photo models: also the degraded held-out set (runs/real/heldout.sh)

Scores use the paper's protocol (accel.evaluate): LR made from HR with MATLAB's bicubic, the model's
output quantized like the official code, PSNR/SSIM on Y with the border shaved; bicubic beside it.
Writes <weights stem>.md (with Hugging Face front matter) and <weights stem>.json next to the weights.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from accel.api import model_from_weights
from accel.degrade.chain import CHAINS
from accel.degrade.chain import table as chain_table
from accel.evaluate import evaluate_model, table
from accel.explain.sources import SOURCES
from accel.platform import hardware
from accel.run.choose import QUALITY_THRESHOLD
from accel.train import TrainConfig
from reference.weights import load_weights, read_metadata

PAPER_SET5 = SOURCES["rcan_paper_table"]["rcan"]   # the RCAN paper's Set5 PSNR per scale (BI)
COMPACT_ABOUT = ("The compact RCAN ×2 (`--model compact`): trained by this project on CPU, from scratch, with "
                 "`python -m accel.train`; the same architecture as the official RCAN (same module tree and key "
                 "names), 43× fewer parameters.")

DEEP_ABOUT = ("The deep RCAN ×2 (`--model deep`, the default): the official RCAN's residual channel-attention blocks "
              "and width (64 features, reduction 16) at a quarter of its depth, 5 residual groups × 10 RCABs (same "
              "module tree and key names). Trained by this project with `python -m accel.train`: 543 steps of 16 "
              "patches on a 2-core CPU (2.4 h, Set5 34.71 dB), then from those weights `bash runs/gpu/train.sh` — "
              "9 minutes on one H100 with bfloat16 convolutions and a warm-up + cosine schedule fitted to that "
              "time (`--steps fit`), the run this card records.")
REAL_ABOUT = ("The real-photo RCAN ×2 (`--model {name}`; {role}): the shipped `{base}` model fine-tuned by this "
              "project with `python -m accel.train --degrade CHAIN --ema 0.999`, on inputs made from each HR patch by a "
              "degradation chain of accel/degrade/chain.py (below), the HR target kept clean. Same network as "
              "`{base}`, so `--strength S` interpolates the two: (1 − S)·{base} + S·{name}.")
# How a model came to its weights where it took more than the one run its file records.
HISTORY = {"rcan_real_x2": " Three fine-tunes, one after the other: first on the harsher `real` chain (584 steps of "
                           "8 LR patches 32×32, 0.84 h on a 2-core CPU, `bash runs/real/train_cpu.sh`), then on the "
                           "milder `photo` chain (1,233 steps of 8 × 48², 95 min, `bash runs/real/train_photo.sh`), "
                           "then on the `mild` chain (`DEGRADE=mild bash runs/real/train_photo.sh 5100`), the run "
                           "this card records."}
ABOUT = {"rcan_compact_x2": COMPACT_ABOUT, "rcan_deep_x2": DEEP_ABOUT,
         "rcan_real_x2": REAL_ABOUT.format(name="real", base="deep", role="what `--model auto` runs for a JPEG "
                                           f"below quality {QUALITY_THRESHOLD} or a lossy WebP")
         + HISTORY["rcan_real_x2"],
         "rcan_real_compact_x2": REAL_ABOUT.format(name="real-compact", base="compact",
                                                   role="the small twin of `real`, for slow CPUs")}
BICUBIC_TWIN = {"rcan_real_x2": "deep", "rcan_real_compact_x2": "compact"}


def training_record(meta: dict, config) -> TrainConfig | None:
    """The TrainConfig a weights file was trained with: one JSON entry (accel.train), or the separate keys
    of files written before it had one (their warm-up was the default, 200 steps)."""
    if "train_config" in meta:
        return TrainConfig.from_json(meta["train_config"])
    if "steps" not in meta:
        return None
    return TrainConfig(config, int(meta["steps"]), int(meta["batch"]), int(meta["patch"]), float(meta["peak_lr"]),
                       200, int(meta["seed"]))


def front_matter(name: str, card: dict) -> str:
    """Hugging Face model-card metadata, so the weights can be published on a model hub as they are."""
    s = card["config"]["scale"]
    scores = card[f"set5_x{s}"]
    real = card["training"].get("degradation", "bicubic") != "bicubic"
    task = "real-photo degradations" if real else "bicubic degradation"
    return f"""---
license: mit
library_name: rcan-threeways
pipeline_tag: image-to-image
tags: [super-resolution, image-upscaling, rcan, channel-attention, jax, flax]
metrics: [psnr, ssim]
model-index:
- name: {name}
  results:
  - task: {{type: image-to-image, name: Image super-resolution ×{s} ({task})}}
    dataset: {{type: set5, name: Set5}}
    metrics:
    - {{type: psnr, value: {scores['psnr']:.2f}, name: PSNR on Y (dB)}}
    - {{type: ssim, value: {scores['ssim']:.4f}, name: SSIM on Y}}
---
"""


def degraded_scores(heldout, weights_path) -> tuple[dict, str]:
    """This model and its bicubic twin on the degraded held-out set (accel.evaluate --degrade, seed 0)."""
    from accel.api import load_model
    ours = evaluate_model(heldout, 2, load_model(weights_path), progress=False, degrade=0)
    twin_name = BICUBIC_TWIN[Path(weights_path).stem]
    twin = evaluate_model(heldout, 2, load_model(model=twin_name), progress=False, degrade=0)
    scores = {"images": len(ours["images"]), "psnr": round(ours["mean"]["psnr"], 4),
              "ssim": round(ours["mean"]["ssim"], 4), "bicubic_psnr": round(ours["bicubic"]["psnr"], 4),
              f"{twin_name}_psnr": round(twin["mean"]["psnr"], 4), "beats_bicubic": ours["beats_bicubic"]}
    rows = "\n".join(f"{r['name']:<10} {r['psnr']:8.3f} {t['psnr']:8.3f} {b['psnr']:8.3f}"
                      for r, t, b in zip(ours["images"], twin["images"], ours["bicubic_images"]))
    md = f"""
## Scores on degraded photos (held out)

{scores['images']} photos none of the fine-tunes saw (Set5 and the 20 BSD200 photos of runs/real/holdout.txt),
each made into a photo as people have them by `python -m accel.evaluate --degrade` (accel/degrade/testset.py:
Pillow's Gaussian blur σ 0.2–1.2, MATLAB bicubic ×½, Gaussian noise σ 0–4, Pillow JPEG quality 60–90; seed 0),
scored against the clean HR (PSNR on Y, 2-pixel border):

| | PSNR | |
|---|---|---|
| this model | **{scores['psnr']:.2f} dB** | beats bicubic on {100 * scores['beats_bicubic']:.0f} % of the photos |
| `{twin_name}` (the bicubic-trained model it was fine-tuned from) | {scores[f'{twin_name}_psnr']:.2f} dB | |
| bicubic | {scores['bicubic_psnr']:.2f} dB | |

```
image        model {twin_name:>8}  bicubic
{rows}
```

Reproduce: `bash runs/real/heldout.sh` (builds runs/real/heldout/ from Set5 and the held-out training photos), then
`python -m accel.evaluate --hr runs/real/heldout --scale 2 --degrade --weights {weights_path}`.
"""
    return scores, md


def degradation_table(chain: str) -> str:
    return "\n".join(["| step | round 1 (HR size) | round 2 (LR size) / final |", "|---|---|---|",
                      *(f"| {a} | {b} | {c} |" for a, b, c in chain_table(chain))])


def build_card(weights_path, hr_dir, about: str, heldout=None) -> tuple[dict, str]:
    weights, config = load_weights(weights_path)
    meta = read_metadata(weights_path)
    model = model_from_weights(weights, config)
    result = evaluate_model(hr_dir, config.scale, model, progress=False)
    params = int(sum(v.size for v in weights.values()))
    tc = training_record(meta, config)
    hours = float(meta.get("train_seconds", 0)) / 3600
    data = " + ".join(Path(d).name for d in meta.get("data", "").split())   # folder names, not local paths
    s = config.scale
    card = {
        "file": Path(weights_path).name, "config": json.loads(config.to_json()), "parameters": params,
        "training": {**(json.loads(tc.to_json()) if tc else {}), "data": data, "exclude": meta.get("exclude"),
                     "n_train_images": meta.get("n_train_images"), "train_seconds": meta.get("train_seconds"),
                     "dtype": meta.get("dtype", "float32")},
        "machine": meta.get("machine") or f"{hardware.describe_cpu()} (CPU only)",
        f"set5_x{s}": {"psnr": round(result["mean"]["psnr"], 4), "ssim": round(result["mean"]["ssim"], 4),
                       "bicubic_psnr": round(result["bicubic"]["psnr"], 4),
                       "bicubic_ssim": round(result["bicubic"]["ssim"], 4),
                       "images": {r["name"]: round(r["psnr"], 4) for r in result["images"]}},
    }
    done = int(meta.get("steps", tc.steps if tc else 0))
    cut = f" (of a {tc.steps}-step schedule, ended by its time budget)" if tc and done < tc.steps else ""
    real = tc is not None and tc.degradation in CHAINS
    inputs = (f"LR made by the {tc.degradation} chain below, {CHAINS[tc.degradation].clean:.0%} MATLAB-bicubic"
              if real else "MATLAB-bicubic LR")
    training = (f"{done} steps{cut} of {tc.batch} LR patches {tc.patch}×{tc.patch} ({inputs}, flips and "
                f"90° turns), {meta.get('dtype', 'float32')} convolutions, L1 loss, Adam, peak LR {tc.peak_lr} after "
                f"{tc.warmup} warm-up steps, cosine decay, " + (f"EMA of the weights (decay {tc.ema}), " if tc.ema else "")
                + f"seed {tc.seed}" if tc else "unknown")
    extra = ""
    if real:
        extra = (f"\n## The degradations it was trained on (accel/degrade/chain.py, the `{tc.degradation}` chain)\n\n"
                 + degradation_table(tc.degradation) + "\n")
        if heldout:
            card["degraded_heldout"], md_scores = degraded_scores(heldout, weights_path)
            extra += md_scores
    stem = Path(weights_path).stem
    md = front_matter(stem, card) + f"""
# Model card: {card['file']}

{about}

| | |
|---|---|
| config | {config.n_resgroups} residual groups × {config.n_resblocks} RCABs, {config.n_feats} features, reduction {config.reduction}, ×{s} |
| parameters | {params:,} (the official RCAN: 15,444,667) |
| data | {data} — {meta.get('n_train_images', '?')} images (left out: {meta.get('exclude') or 'none'}; BSD200/302003 is the source of Set5's woman) |
| training | {training} |
| wall time | {hours:.2f} h of training on {card['machine']} |

## Scores (Set5 ×{s}, the paper's protocol: Y channel, {s}-pixel border shaved)

| | PSNR | SSIM |
|---|---|---|
| this model | **{card[f'set5_x{s}']['psnr']:.2f} dB** | {card[f'set5_x{s}']['ssim']:.4f} |
| bicubic | {card[f'set5_x{s}']['bicubic_psnr']:.2f} dB | {card[f'set5_x{s}']['bicubic_ssim']:.4f} |
| official RCAN (paper; 15.4 M parameters, trained on DIV2K) | {PAPER_SET5.get(str(s), '-')} dB | |

Per image:

```
{table(result)}
```

Reproduce: `python -m accel.evaluate --hr tests/data/Set5/HR_x{s} --scale {s} --weights {weights_path}`,
or upscale the official LR files with `python -m accel.upscale tests/data/Set5/LR_x{s} -o out/ --weights {weights_path}`
and score them with `python -m accel.evaluate --hr tests/data/Set5/HR_x{s} --sr out --scale {s}`.
Regenerate this card: `python -m tools.card {weights_path} --hr tests/data/Set5/HR_x{s}{" --heldout runs/real/heldout" if real else ""}`.
{extra}
Limits: trained on {meta.get('n_train_images', '?')} small images (the official RCAN saw DIV2K's 800 2K images), """ + (
        """on synthetic degradations: a clean bicubic downscale scores lower than with the bicubic-trained
model (above: Set5), which is why `--model auto` runs that one for lossless files; the strongest noise and
the lowest JPEG qualities are beyond its training ranges.
""" if real else """for
the bicubic degradation only: noise, JPEG artefacts or camera blur in a real photo are not what it learned
to undo (the real-photo models were: `--model real`). For the paper's quality, convert an official checkpoint
(`python -m weights_convert RCAN_BIX2.pt -o rcan_x2.safetensors`) and pass `--weights`.
""")
    return card, md


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.card", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", help="canonical weights file")
    ap.add_argument("--hr", required=True, help="Set5 HR folder for the scores")
    ap.add_argument("--about", help="the card's opening paragraph (default: the shipped model's, by file name)")
    ap.add_argument("--heldout", help="real-photo models: folder of held-out HR photos for the degraded scores")
    args = ap.parse_args(argv)
    about = args.about or ABOUT.get(Path(args.weights).stem)
    if about is None:
        ap.error(f"--about is needed for {args.weights} (not a shipped model)")
    card, md = build_card(args.weights, args.hr, about, args.heldout)
    stem = Path(args.weights).with_suffix("")
    stem.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    stem.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
