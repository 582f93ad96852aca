"""Upscale images with RCAN: the tool people run.

Examples:
    python -m accel.upscale photo.png                  # writes photo_x2.png beside it (shipped compact model)
    python -m accel.upscale photos/ -o out/            # every image in photos/, into out/
    python -m accel.upscale img.jpg --weights RCAN_BIX4.pt --scale 4 --format png
    python -m accel.upscale scan.tif --tile 256 --max-memory 2   # bounded memory for big images
    python -m accel.upscale butterfly.png --explain    # also writes butterfly_x2.md / .html

Exit status: 0 when every image succeeded, 1 when any failed (each failure is one line
`error: <file>: <reason>` and the others still run), 2 for usage errors and unusable weights.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import jax.numpy as jnp
from tqdm import tqdm

from reference.config import SCALES
from reference.weights import WeightsError

from . import autotune, runtime
from .api import load_model
from .report import write_reports
from .images import FORMATS, IMAGE_SUFFIXES, ImageError, open_image, save_atomic
from .pipeline import default_max_memory_gb, upscale_image

# --- the command line ------------------------------------------------------------------------------

def collect_inputs(items, scale) -> list[Path]:
    """Files as given; folders walked for images, skipping our own earlier outputs (a `<stem>_x<scale>`
    file whose `<stem>` image sits beside it)."""
    out = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                           and not f.name.startswith(".tmp-"))
            stems = {(f.parent, f.stem) for f in found}
            tag = f"_x{scale}"
            out += [f for f in found if not (f.stem.endswith(tag) and (f.parent, f.stem[:-len(tag)]) in stems)]
        else:
            out.append(p)
    return out


def output_path(src: Path, scale: int, fmt: str | None, out: str | None, many: bool) -> Path:
    ext = fmt or src.suffix.lower().lstrip(".")
    if ext not in FORMATS:
        ext = "png"
    name = f"{src.stem}_x{scale}.{ext}"
    if out is None:
        return src.with_name(name)
    o = Path(out)
    if many or o.is_dir() or out.endswith(os.sep):
        return o / name
    return o


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m accel.upscale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="images, or folders to walk for images")
    ap.add_argument("-o", "--output", help="output file (one input) or folder (several inputs, or a folder)")
    ap.add_argument("--weights", help="canonical .safetensors or official .pt/.pth (default: the shipped ×2 model)")
    ap.add_argument("--scale", type=int, choices=SCALES, help="upscaling factor; must match the weights")
    ap.add_argument("--tile", default="auto", help="tile size in LR pixels, 0 for whole image, or auto (default)")
    ap.add_argument("--tile-overlap", type=int, default=16, help="overlap between tiles in LR pixels (default 16)")
    ap.add_argument("--max-memory", type=float, help="GB of working memory for --tile auto "
                                                      f"(default {default_max_memory_gb():.1f}: min(2, RAM/4))")
    ap.add_argument("--chop", action="store_true", help="the official test code's forward_chop (official pixels)")
    ap.add_argument("--ensemble", action="store_true", help="RCAN+: mean over the 8 flips/transposes (8× slower)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="compute precision (bfloat16 is for accelerators)")
    ap.add_argument("--format", choices=sorted(set(FORMATS) - {"jpeg", "tif"}),
                    help="output format (default: the input's)")
    ap.add_argument("--conv", choices=autotune.SETTINGS, default=os.environ.get("RCAN_CONV", "auto"),
                    help="CPU convolution path (default: $RCAN_CONV or auto, timed once per shape)")
    ap.add_argument("--force", action="store_true", help="overwrite existing outputs")
    ap.add_argument("--max-pixels", type=int, help="raise Pillow's decompression-bomb limit (pixels per image)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--explain", action="store_true", help="also write <output stem>.md and .html explaining the run")
    return ap


def check_output(src: Path, dst: Path, args, many: bool) -> None:
    """Refuse an output that would overwrite the input or an existing file, or that cannot be written."""
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise ImageError("the output would overwrite the input")
    if dst.exists() and not args.force:
        raise ImageError(f"{dst} exists (use --force to overwrite)")
    if not dst.parent.is_dir():
        if args.output and (many or args.output.endswith(os.sep)):
            dst.parent.mkdir(parents=True, exist_ok=True)
        else:
            raise ImageError(f"output folder {dst.parent} does not exist")
    if not os.access(dst.parent, os.W_OK):
        raise ImageError(f"output folder {dst.parent} is not writable")


def upscale_file(src: Path, dst: Path, model, args, tile, show: bool) -> tuple:
    """One image file to its output file (and reports); returns (input image, output image, run record)."""
    im = open_image(src, args.max_pixels)
    record: dict = {}
    with tqdm(total=1, desc=src.name, unit="tile", disable=not show, leave=False, file=sys.stderr) as bar:
        out = upscale_image(im, model, tile=tile, overlap=args.tile_overlap, chop=args.chop,
                            ensemble=args.ensemble, max_memory_gb=args.max_memory, progress=bar, record=record)
    try:
        save_atomic(out, dst, dst.suffix.lower().lstrip("."), record["icc"])
    except OSError as e:
        raise ImageError(f"cannot write {dst}: {e.strerror or e}") from None
    if args.explain:
        write_reports(src, dst, model, args.weights, record)
    return im, out, record


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    runtime.configure_from_env()

    if args.tile == "auto":
        tile = "auto"
    else:
        try:
            tile = int(args.tile) or None
        except ValueError:
            ap.error(f"--tile must be a number or auto, not {args.tile!r}")
        if tile is not None and tile < 8:
            ap.error("--tile must be at least 8")
    if args.max_memory is not None and args.max_memory <= 0:
        ap.error("--max-memory must be positive")

    try:
        model = load_model(args.weights, scale=args.scale, conv=args.conv,
                           dtype=jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32)
    except (WeightsError, ValueError, OSError) as e:
        msg = str(e)
        if args.weights and not msg.startswith(str(args.weights)):
            msg = f"{args.weights}: {msg}"
        print(f"error: {msg}", file=sys.stderr)
        return 2
    scale = model.config.scale

    inputs = collect_inputs(args.inputs, scale)
    if not inputs:
        ap.error("no images found")
    many = len(inputs) > 1
    if args.output and not many and len(args.inputs) == 1 and Path(args.inputs[0]).is_dir():
        many = True

    show = not args.quiet and sys.stderr.isatty()
    failures = 0
    for src in tqdm(inputs, desc="images", unit="img", disable=not show or not many, file=sys.stderr):
        try:
            dst = output_path(src, scale, args.format, args.output, many)
            check_output(src, dst, args, many)
            im, out, record = upscale_file(src, dst, model, args, tile, show)
        except (ImageError, OSError) as e:
            failures += 1
            print(f"error: {src}: {e}", file=sys.stderr)
            continue
        if not args.quiet:
            print(f"{src} -> {dst} ({im.width}x{im.height} -> {out.width}x{out.height}, "
                  f"{record['seconds']:.1f} s{', tiles ' + str(record['tile']) if record['tile'] else ''})",
                  file=sys.stderr)
    return 1 if failures else 0

if __name__ == "__main__":
    sys.exit(main())
