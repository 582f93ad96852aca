"""Score super-resolution with the RCAN paper's protocol (Y channel, border shave, MATLAB bicubic).

Examples:
    # the official RCAN outputs against Set5 HR: prints 38.2742 / 0.9614
    python -m accel.evaluate --hr tests/data/Set5/HR_x2 --sr tests/data/Set5/RCAN_x2 --scale 2
    # run the shipped model on LR made from HR (MATLAB bicubic), beside the bicubic baseline
    python -m accel.evaluate --hr tests/data/Set5/HR_x2 --scale 2 --json
    # photos as people have them: blurred, noisy JPEGs made from the HR (seeded), bicubic beside the model
    python -m accel.evaluate --hr tests/data/Set5/HR_x2 --scale 2 --degrade --save-lr degraded/

Images pair by the part of the file name before the first '_' (baby_HR_x2.png ~ baby_RCAN_x2.png ~ baby.png).
"""
from __future__ import annotations

import io
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from reference.metrics import imresize, modcrop, psnr, quantize, ssim
from reference.support import cli

from . import options
from .api import SHIPPED, load_model
from .conv import autotune
from .degrade import testset
from .model.rcan import RCAN
from .platform import distributed, runtime
from .run.choose import QUALITY_THRESHOLD, Choice, choose
from .run.images import IMAGE_SUFFIXES
from .run.runner import super_resolve


class EvalError(ValueError):
    """Images that cannot be paired or scored (the message says why)."""


def image_key(path: Path) -> str:
    return path.stem.split("_")[0]


def index(folder) -> dict[str, Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise EvalError(f"{folder}: no such folder")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            key = image_key(p)
            if key in found:
                raise EvalError(f"{folder}: {found[key].name} and {p.name} both pair as '{key}'")
            found[key] = p
    if not found:
        raise EvalError(f"{folder}: no images")
    return found


def pair(hr_dir, other_dir) -> list[tuple[str, Path, Path]]:
    hr, other = index(hr_dir), index(other_dir)
    unmatched = sorted(set(hr) ^ set(other))
    if unmatched:
        where = [f"{k} (only in {hr_dir if k in hr else other_dir})" for k in unmatched]
        raise EvalError("unmatched images: " + ", ".join(where))
    return [(k, hr[k], other[k]) for k in sorted(hr)]


SSIM_WINDOW = 11


def read_scored(path) -> np.ndarray:
    """An image to score, uint8 RGB. The paper's protocol is 8-bit: a 16-bit file is refused rather than
    clipped to 255 (which scored a 16-bit HR against its own 8-bit copy at 6 dB)."""
    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
            a = np.asarray(im)
            if a.size and (a.min() < 0 or a.max() > 255):
                raise EvalError(f"{Path(path).name}: a {im.mode} image with values up to {a.max():.0f}; the paper's "
                                "protocol scores 8-bit images: convert HR and SR to 8 bits first")
            return np.repeat(np.clip(a, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        return np.asarray(im.convert("RGB"))


def score(hr: np.ndarray, sr: np.ndarray, scale: int, name: str = "") -> dict:
    if hr.shape != sr.shape:
        raise EvalError(f"{name}: HR is {hr.shape[1]}x{hr.shape[0]}, SR is {sr.shape[1]}x{sr.shape[0]}")
    if min(hr.shape[:2]) - 2 * scale < SSIM_WINDOW:
        raise EvalError(f"{name}: {hr.shape[1]}x{hr.shape[0]} is too small to score (SSIM's {SSIM_WINDOW}×{SSIM_WINDOW} "
                        f"window must fit after a {scale}-pixel border)")
    return {"name": name, "psnr": psnr(hr, sr, scale), "ssim": ssim(hr, sr, scale)}


def mean(rows):
    return {"psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows]))}


def evaluate_sr(hr_dir, sr_dir, scale: int, pairs=None) -> dict:
    """Score each pair; a pair that cannot be read or scored is one line in "errors", the others are scored."""
    rows, errors = [], []
    for name, h, s in pairs or pair(hr_dir, sr_dir):
        try:
            rows.append(score(modcrop(read_scored(h), scale), read_scored(s), scale, name))
        except (EvalError, ValueError, OSError) as e:
            errors.append(f"{name}: {e}" if not str(e).startswith(name) else str(e))
    if not rows:
        raise EvalError("no pair could be scored: " + "; ".join(errors))
    return {"scale": scale, "mean": mean(rows), "images": rows, "errors": errors}


def finite(value):
    """JSON has no Infinity: identical images (PSNR ∞) are null."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


class Models:
    """The shipped model each input gets (accel/run/choose.py), loaded once each: `--model auto` here."""

    def __init__(self, **load):
        self.load, self.loaded = load, {}

    def __call__(self, choice: Choice):
        if choice.model not in self.loaded:
            self.loaded[choice.model] = load_model(model=choice.model, **self.load)
        return self.loaded[choice.model]


def _lr_of(name, hr_path, lr_path, hr, scale, degrade, save_lr):
    """An image's LR and the model choice it gets: the file given, a degraded JPEG (seeded), or MATLAB's
    bicubic of the HR (lossless, as a clean downscale)."""
    if lr_path:
        with Image.open(lr_path) as im:
            return np.asarray(im.convert("RGB")), choose(lr_path, im)
    if degrade is None:
        return imresize(hr, 1 / scale), Choice("deep", "MATLAB-bicubic LR (lossless)")
    data, draws = testset.degrade_photo(hr, scale, testset.rng_for(degrade, name))
    if save_lr:
        (Path(save_lr) / f"{name}_q{draws['quality']}.jpg").write_bytes(data)
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")), choose(f"{name}.jpg", im)


def evaluate_model(hr_dir, scale: int, model, lr_dir=None, chop=False, ensemble=False, progress=True,
                   degrade: int | None = None, save_lr=None) -> dict:
    """Run the model on each LR (given, made from HR with MATLAB's bicubic, or with degrade=seed a blurred,
    noisy JPEG of it, accel/degrade/testset.py) and score it. model: an RCAN, or a function of the input's
    Choice (Models: the model `--model auto` picks). Under jax.distributed the images are split between
    processes and every process gets all the scores."""
    if lr_dir:
        items = pair(hr_dir, lr_dir)
    else:
        items = [(k, p, None) for k, p in sorted(index(hr_dir).items())]
    mine = distributed.share(list(range(len(items))), [float(h.stat().st_size) for _, h, _ in items])
    if save_lr:
        Path(save_lr).mkdir(parents=True, exist_ok=True)
    names = sorted(SHIPPED)
    scored, errors = [], []   # (item index, psnr, ssim, bicubic psnr, bicubic ssim, model index in names or -1)
    for i in tqdm(mine, desc="evaluate", disable=not progress, file=sys.stderr):
        cli.check_interrupted()
        name, h, l = items[i]
        try:   # one image that cannot be read or scored is one line; the others are scored
            hr = modcrop(read_scored(h), scale)
            lr, choice = _lr_of(name, h, l, hr, scale, degrade, save_lr)
            if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
                raise EvalError(f"LR {lr.shape[1]}x{lr.shape[0]} × {scale} != HR {hr.shape[1]}x{hr.shape[0]}")
            score(hr, hr, scale, name)   # too small to score: said before the model runs
            net = model if isinstance(model, RCAN) else model(choice)
            sr = quantize(super_resolve(net, lr.astype(np.float32), chop=chop, ensemble=ensemble))
            r, b = score(hr, sr, scale, name), score(hr, imresize(lr, scale), scale, name)
        except (EvalError, OSError) as e:
            errors.append(str(e) if str(e).startswith(name) else f"{name}: {e}")
            continue
        chosen = -1 if isinstance(model, RCAN) else names.index(choice.model)
        scored.append((i, r["psnr"], r["ssim"], b["psnr"], b["ssim"], chosen))
    every = distributed.gather(np.array(scored, np.float64).ravel()).reshape(-1, 6)
    if not len(every):
        raise EvalError("no image could be scored: " + "; ".join(errors))
    every = every[np.argsort(every[:, 0])]
    rows = [{"name": items[int(i)][0], "psnr": float(p), "ssim": float(q),
             **({"model": names[int(m)]} if m >= 0 else {})} for i, p, q, _, _, m in every]
    bicubic = [{"name": items[int(i)][0], "psnr": float(p), "ssim": float(q)} for i, _, _, p, q, _ in every]
    out = {"scale": scale, "mean": mean(rows), "bicubic": mean(bicubic), "images": rows, "bicubic_images": bicubic,
           "beats_bicubic": float(np.mean([r["psnr"] > b["psnr"] for r, b in zip(rows, bicubic)])), "errors": errors}
    if not isinstance(model, RCAN):
        out["models"] = dict(Counter(r["model"] for r in rows))
    if degrade is not None:
        out["degraded"] = {"seed": degrade, "blur_sigma": testset.BLUR, "noise_sigma": testset.NOISE,
                           "jpeg_quality": testset.QUALITY}
    return out


def table(result: dict) -> str:
    lines = [f"{'image':<16} {'PSNR':>9} {'SSIM':>7}" + ("   bicubic PSNR / SSIM" if "bicubic" in result else "")]
    bic = {r["name"]: r for r in result.get("bicubic_images", [])}
    for r in result["images"]:
        line = f"{r['name']:<16} {r['psnr']:>9.4f} {r['ssim']:>7.4f}"
        if r["name"] in bic:
            line += f"   {bic[r['name']]['psnr']:.4f} / {bic[r['name']]['ssim']:.4f}"
        lines.append(line)
    m = result["mean"]
    line = f"{'mean':<16} {m['psnr']:>9.4f} {m['ssim']:>7.4f}"
    if "bicubic" in result:
        line += f"   {result['bicubic']['psnr']:.4f} / {result['bicubic']['ssim']:.4f}"
    lines.append(line)
    return "\n".join(lines)


def parser():
    ap = cli.parser("python -m accel.evaluate", __doc__)
    ap.add_argument("--hr", required=True, help="folder of HR (ground truth) images")
    options.scale(ap, required=True)
    ap.add_argument("--sr", help="folder of SR images to score (no model run)")
    options.weights(ap, model_help="the shipped model to run; auto (default): the one rcan-upscale picks for each "
                                   f"input (deep for the lossless bicubic LR, real for a JPEG below quality "
                                   f"{QUALITY_THRESHOLD})",
                    weights_help="weights to run (canonical .safetensors or .pt/.pth); default: a shipped model")
    ap.add_argument("--lr", help="folder of LR inputs (default: made from HR with MATLAB bicubic)")
    ap.add_argument("--degrade", nargs="?", type=int, const=0, metavar="SEED",
                    help="make each LR a degraded photo of its HR (Gaussian blur σ 0.2–1.2, MATLAB bicubic, noise "
                         "σ 0–4, Pillow JPEG quality 60–90; accel/degrade/testset.py), seeded (default seed 0)")
    ap.add_argument("--save-lr", metavar="DIR", help="with --degrade: also write the degraded JPEG files there "
                                                     "(<name>_q<quality>.jpg), e.g. to run rcan-upscale on them")
    ap.add_argument("--chop", action="store_true", help="official forward_chop (4 overlapping quadrants)")
    ap.add_argument("--ensemble", action="store_true", help="RCAN+: mean over the 8 flips/transposes")
    options.dtype(ap, auto=False, help="compute precision (default float32: scores are the model's own; bfloat16 "
                                       "costs under 0.01 dB on Set5, accel/weights/precision.json)")
    options.conv(ap)
    options.json_output(ap, help="print one JSON object instead of the table")
    options.quiet(ap)
    distributed.add_options(ap)
    return ap


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    distributed.initialize(ap, args)
    if args.sr and (args.weights or args.model != "auto" or args.lr or args.chop or args.ensemble
                    or args.degrade is not None):
        ap.error("--sr scores existing images: --weights/--model/--lr/--degrade/--chop/--ensemble do not apply")
    if args.weights and args.model != "auto":
        ap.error("--model and --weights both choose the weights: give one")
    if args.degrade is not None and args.lr:
        ap.error("--degrade makes the LR from the HR: --lr does not apply")
    if args.save_lr and args.degrade is None:
        ap.error("--save-lr writes the degraded inputs: it needs --degrade")
    runtime.configure_from_env()
    dtype = options.DTYPES[args.dtype]
    try:   # a path this dtype or device cannot run is a usage error, whatever the weights
        autotune.check_setting(args.conv, dtype)
    except ValueError as e:
        ap.error(str(e))
    try:   # what cannot start is a usage error (2): folders that do not pair, weights that do not fit
        other = args.sr or args.lr
        pairs = pair(args.hr, other) if other else None
        index(args.hr)   # the ground truth is there and holds images
        if pairs:
            print("paired: " + ", ".join(f"{h.name}~{o.name}" for _, h, o in pairs), file=sys.stderr)
        if args.sr:
            model = None
        elif args.weights or args.model != "auto":
            model = load_model(args.weights, scale=args.scale, dtype=dtype, conv=args.conv,
                               model=None if args.model == "auto" else args.model)
        else:
            if args.scale != 2:
                raise EvalError(f"the shipped models are ×2; for ×{args.scale} pass --weights")
            model = Models(scale=args.scale, dtype=dtype, conv=args.conv)
    except (EvalError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.USAGE
    try:   # an image that cannot be read or scored fails the run (1)
        if args.sr:
            result = evaluate_sr(args.hr, args.sr, args.scale, pairs)
        else:
            result = evaluate_model(args.hr, args.scale, model, args.lr, args.chop, args.ensemble,
                                    progress=not args.quiet and sys.stderr.isatty(), degrade=args.degrade,
                                    save_lr=args.save_lr)
    except (EvalError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.SOME_FAILED
    if not distributed.is_main():   # every process has the scores; process 0 prints them
        return cli.DONE
    for line in result.get("errors", ()):
        print(f"error: {line}", file=sys.stderr)
    if args.json:
        out = {k: v for k, v in result.items() if k != "bicubic_images"}
        print(json.dumps(finite(out), indent=2, allow_nan=False))
    else:
        print(table(result))
        if "models" in result:
            print("models: " + ", ".join(f"{k} ({n} images)" for k, n in result["models"].items()))
    return cli.SOME_FAILED if result.get("errors") else cli.DONE


entry = cli.entry(main)   # the console script

if __name__ == "__main__":
    sys.exit(cli.run(main))
