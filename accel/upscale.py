"""Upscale images with RCAN: the tool people run (also installed as `rcan-upscale`).

Examples:
    python -m accel.upscale photo.png                  # writes photo_x2.png beside it (the model suited to it)
    python -m accel.upscale photo.jpg --strength 0.5   # half-way between the bicubic and the real-photo model
    python -m accel.upscale photos/ -o out/            # every image under photos/, mirrored under out/
    python -m accel.upscale photos/ -o out/ --skip-existing --json    # resume a batch; one JSON line per image
    python -m accel.upscale img.jpg --outscale 3       # ×2 by the model, then a Lanczos resample to ×3
    python -m accel.upscale img.jpg --width 1920       # to 1920 px wide (height keeps the aspect ratio)
    python -m accel.upscale img.jpg --weights RCAN_BIX4.pt --scale 4 --format png
    python -m accel.upscale scan.tif --tile 256 --max-memory 2   # bounded memory for big images
    python -m accel.upscale butterfly.png --explain    # also writes butterfly_x2.md (+ _figures/) and .html

--model auto (the default) reads each file: a JPEG below quality 91 or a lossy WebP gets the real-photo
model (trained on blurred, noisy, JPEG-compressed inputs), a lossless file the bicubic-trained deep one
(accel/run/choose.py); the first line says which ran and why. --strength S in 0..1 interpolates the weights
of the pair (deep, real) or (compact, real-compact): 0 is the bicubic model, 1 the real-photo one.

Outputs are `<stem>_<suffix>.<ext>` (suffix x2 by default); an existing output is never replaced
without --force, not even one another process writes at the same moment. Animated GIF / APNG / WebP
and multi-page TIFF are upscaled frame by frame, keeping durations and the loop count.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import threading
from collections import Counter
from pathlib import Path

import jax
import numpy as np
from PIL import Image
from tqdm import tqdm

from reference.support import cli
from reference.weights import WeightsError

from . import options
from .api import BICUBIC_OF, REAL_OF, first_run, load_model
from .conv import autotune
from .platform import distributed, runtime
from .report import report_paths, write_reports
from .run import folder, precision
from .run.choose import QUALITY_THRESHOLD, Choice, choose
from .run.images import FORMATS, IMAGE_SUFFIXES, ImageError, encode, frames, open_image, save_atomic
from .run.pipeline import default_max_memory_gb, upscale_image
from .run.tiles import FOLDER_TILE, OVERLAP, TILE_SIZES

DEVICES = {"cpu": "cpu", "gpu": "gpu", "tpu": "tpu"}


# --- what to write where ---------------------------------------------------------------------------

@dataclasses.dataclass
class Job:
    src: Path
    dst: Path
    reports: tuple[Path, ...] = ()   # --explain: <dst stem>.md, .html and _figures/
    choice: Choice | None = None     # the shipped model that runs it, and why (None: --weights)
    strength: float | None = None    # --strength, when the pair's weights are interpolated


def collect_inputs(items, suffix: str) -> list[tuple[Path, Path]]:
    """(file, its path relative to the folder given) for every input: files as given; folders walked for
    images, skipping our own earlier outputs (a `<stem>_<suffix>` file whose `<stem>` image sits beside it)."""
    out = []
    for item in items:
        p = Path(item)
        if not p.is_dir():
            out.append((p, Path(p.name)))
            continue
        found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                       and not f.name.startswith(".tmp-"))
        stems = {(f.parent, f.stem) for f in found}
        tag = f"_{suffix}" if suffix else None
        out += [(f, f.relative_to(p)) for f in found
                if not (tag and f.stem.endswith(tag) and (f.parent, f.stem[:-len(tag)]) in stems)]
    return out


def default_suffix(args, scale: int) -> str:
    """The output name's suffix without --suffix: x<outscale>, or x<the model's scale>."""
    return f"x{args.outscale:g}" if args.outscale else f"x{scale}"


def output_name(src: Path, suffix: str, fmt: str | None) -> str:
    ext = fmt or src.suffix.lower().lstrip(".")
    return f"{src.stem}{'_' + suffix if suffix else ''}.{ext if ext in FORMATS else 'png'}"


def plan(ap, args, inputs: list[tuple[Path, Path]], many: bool) -> list[Job]:
    """Every input's output (and reports), checked before any model runs: -o's extension, collisions."""
    jobs = []
    for src, rel in inputs:
        name = output_name(src, args.suffix, args.format)
        if args.output is None:
            dst = src.with_name(name)
        elif many:
            dst = Path(args.output) / rel.parent / name      # the input tree, mirrored
        elif Path(args.output).is_dir() or args.output.endswith(os.sep):
            dst = Path(args.output) / name
        else:
            dst = Path(args.output)
            ext = dst.suffix.lower().lstrip(".")
            if ext not in FORMATS:
                ap.error(f"-o {args.output}: not a folder and not an image file name (.{' .'.join(sorted(FORMATS))}); "
                         "end a folder with /")
            if args.format and FORMATS[ext] != FORMATS[args.format]:
                ap.error(f"-o {args.output} is .{ext} but --format is {args.format}")
        reports = report_paths(dst) if args.explain else ()
        jobs.append(Job(src, dst, reports))
    written = Counter(os.path.abspath(p) for j in jobs for p in (j.dst, *j.reports))
    clash = [p for p, n in written.items() if n > 1]
    if clash:
        who = [str(j.src) for j in jobs if os.path.abspath(j.dst) in clash or
               any(os.path.abspath(r) in clash for r in j.reports)]
        ap.error(f"{', '.join(who[:4])} would all write {clash[0]}: give distinct names, --suffix or separate -o")
    return jobs


def check_output(job: Job, args, many: bool) -> bool:
    """False when the job is to be skipped (--skip-existing); raises ImageError when it cannot run."""
    dst = job.dst
    if dst.exists() and job.src.exists() and dst.resolve() == job.src.resolve():
        raise ImageError("the output would overwrite the input")
    existing = [p for p in (dst, *job.reports) if p.exists()]
    if existing and args.skip_existing and dst.exists():
        return False
    if existing and not args.force:
        raise ImageError(f"{existing[0]} exists (use --force to overwrite, --skip-existing to skip)")
    if not dst.parent.is_dir():
        if args.output and (many or args.output.endswith(os.sep)):
            dst.parent.mkdir(parents=True, exist_ok=True)
        else:
            raise ImageError(f"output folder {dst.parent} does not exist")
    if not os.access(dst.parent, os.W_OK):
        raise ImageError(f"output folder {dst.parent} is not writable")
    return True


def target_size(out_size: tuple[int, int], scale: int, args) -> tuple[int, int] | None:
    """The final (width, height) when --outscale/--width/--height ask for one other than the model's
    output (out_size, which is scale × the input as shown, EXIF orientation applied)."""
    w, h = out_size
    if args.outscale:
        return max(1, round(w / scale * args.outscale)), max(1, round(h / scale * args.outscale))
    if args.width and args.height:
        return args.width, args.height
    if args.width:
        return args.width, max(1, round(h * args.width / w))
    if args.height:
        return max(1, round(w * args.height / h)), args.height
    return None


# --- one file ----------------------------------------------------------------------------------------

class _Ticker:
    """Refreshes a bar twice a second while one long call runs (its elapsed time then moves)."""

    def __init__(self, bar):
        self.bar, self.stop = bar, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(0.5):
            self.bar.refresh()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def upscale_file(job: Job, model, args, tile, show: bool, model_name: str | None) -> dict:
    """One image file (every frame of it) to its output file and reports; returns what happened."""
    im = open_image(job.src, args.max_pixels)
    stills, animation = frames(im)
    outs, record, seconds = [], {}, 0.0
    for i, frame in enumerate(stills):
        cli.check_interrupted()
        desc = job.src.name + (f" [{i + 1}/{len(stills)}]" if len(stills) > 1 else "")
        with tqdm(total=1, desc=desc, unit="tile", disable=not show, leave=False, file=sys.stderr) as bar, \
                _Ticker(bar) if show else contextlib.nullcontext():
            out = upscale_image(frame, model, tile=tile, overlap=args.tile_overlap, chop=args.chop,
                                ensemble=args.ensemble, max_memory_gb=args.max_memory, progress=bar, record=record,
                                notice=None if args.quiet else lambda m: tqdm.write(m, file=sys.stderr))
        cli.check_interrupted()
        seconds += record["seconds"]
        target = target_size(out.size, model.config.scale, args)
        if target and target != out.size:
            out = out.resize(target, Image.LANCZOS)
        outs.append(out)
    publish(job, outs if len(outs) > 1 else outs[0], record["icc"], args, animation)
    result = {"input_size": list(im.size), "output_size": list(outs[0].size), "frames": len(outs),
              "seconds": round(seconds, 3), "tile": record.get("tile")}
    if args.explain:
        try:
            md, page = write_reports(job.src, job.dst, model, args.weights, record, model_name,
                                     overwrite=args.force, choice=job_choice(job),
                                     precision={"dtype": args.precision.name, "reason": args.precision.reason})
        except FileExistsError as e:
            raise ImageError(f"{e.filename} appeared while this ran; kept it, use --force to overwrite") from None
        result["reports"] = [str(md), str(page)]
    return result


def report(job: Job, row: dict, args) -> None:
    """One image's outcome: a JSON line on stdout (--json), else a line on stderr (an error always)."""
    if row["status"] == "failed":
        tqdm.write(f"error: {job.src}: {row['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(row), flush=True)
    elif not args.quiet and row["status"] == "done":
        (w, h), (W, H) = row["input_size"], row["output_size"]
        extra = (f", {row['frames']} frames" if row["frames"] > 1 else "") + \
            (f", tiles {row['tile']}" if row["tile"] else "")
        tqdm.write(f"{job.src} -> {job.dst} ({w}x{h} -> {W}x{H}, {row['seconds']:.1f} s{extra})", file=sys.stderr)
        for path in row.get("reports", ()):
            tqdm.write(f"  report: {path}", file=sys.stderr)


def run_jobs(jobs: list[Job], model, args, tile, many: bool, show: bool, label: str, model_name):
    """(job, row) for every job, as each is done: a folder's still images through accel/run/folder.py (one
    compiled shape, tiles of several images per call, decoding and writing on threads), the rest (one
    image, animations, --chop/--ensemble/--explain, --tile 0) one by one through upscale_image. Both feed
    the model through the same Runner (accel/run/runner.py)."""
    def row_for(job):
        return {"input": str(job.src), "output": str(job.dst), "model": label, "scale": model.config.scale,
                "dtype": args.precision.name, "dtype_reason": args.precision.reason,
                **({"model_reason": job.choice.reason, "strength": job_choice(job)["strength"]} if job.choice else {})}

    ready = []
    for job in jobs:                   # outputs are checked before any work, in this thread
        row = row_for(job)
        try:
            if not check_output(job, args, many):
                row["status"] = "skipped"
        except (ImageError, OSError) as e:
            row.update(status="failed", error=str(e))
        if "status" in row:
            yield job, row
        else:
            ready.append(job)
    together = len(ready) > 1 and tile is not None and not (args.chop or args.ensemble or args.explain)
    single = [] if together else ready
    if together:
        size = tile if isinstance(tile, int) else FOLDER_TILE
        if not args.quiet and first_run(model, folder.shapes(size)[0], True):
            tqdm.write(f"first run at tiles of {size}×{size} here: timing the convolution paths and compiling, "
                       "once for the whole folder", file=sys.stderr)
        seconds = folder.warm_up(model, size)
        if not args.quiet:
            tqdm.write(f"ready: {len(ready)} images in tiles of {size}×{size}, one compiled shape "
                       f"({seconds:.1f} s to compile or load it)", file=sys.stderr)
        bar = tqdm(total=len(ready), desc="images", unit="img", disable=not show, file=sys.stderr)

        def finish(item, sr):
            out = encode(sr, item.decoded, model.config.scale)
            target = target_size(out.size, model.config.scale, args)
            if target and target != out.size:
                out = out.resize(target, Image.LANCZOS)
            publish(item.job, out, item.decoded.icc, args)
            item.result = {"input_size": list(item.image.size), "output_size": list(out.size), "frames": 1,
                           "tile": size}

        for item in folder.run(ready, model, lambda job: open_image(job.src, args.max_pixels), finish, tile=size,
                               overlap=args.tile_overlap):
            if item.single:
                single.append(item.job)
                continue
            row = row_for(item.job)
            if item.error is not None:
                row.update(status="failed", error=str(item.error))
            else:
                row.update(item.result, seconds=round(item.seconds, 3), status="done")
            bar.update(1)
            yield item.job, row
        bar.close()
    for job in tqdm(single, desc="images", unit="img", disable=not show or len(single) < 2, file=sys.stderr):
        cli.check_interrupted()
        row = row_for(job)
        try:
            row.update(upscale_file(job, model, args, tile, show, model_name), status="done")
        except (ImageError, OSError) as e:
            row.update(status="failed", error=str(e))
        yield job, row


def publish(job: Job, out, icc, args, animation=None) -> None:
    """Write an output: never over an existing file without --force, not even one that appeared meanwhile."""
    try:
        save_atomic(out, job.dst, job.dst.suffix.lower().lstrip("."), icc, overwrite=args.force, animation=animation)
    except FileExistsError:
        raise ImageError(f"{job.dst} appeared while this ran (another process?); kept it, use --force to "
                         "overwrite") from None
    except OSError as e:
        raise ImageError(f"cannot write {job.dst}: {e.strerror or e}") from None


# --- the command line ------------------------------------------------------------------------------

def parser():
    ap = cli.parser("python -m accel.upscale", __doc__)
    ap.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="images, or folders to walk for images")
    ap.add_argument("-o", "--output", help="output file (one input) or folder (several inputs, or a folder)")
    options.weights(ap, model_help=f"a shipped model; auto (default): from each file, a JPEG below quality "
                                   f"{QUALITY_THRESHOLD} or a lossy WebP gets real, a lossless file deep (the first "
                                   "line says which and why)",
                    weights_help="canonical .safetensors or official .pt/.pth instead of a shipped model")
    ap.add_argument("--strength", type=float, help="0..1: interpolate the weights between the bicubic model (0) and "
                                                   "its real-photo twin (1): how much JPEG, blur and noise is "
                                                   "cleaned (default: the model's own, 0 for deep, 1 for real)")
    options.scale(ap, help="upscaling factor; must match the weights")
    ap.add_argument("--suffix", help="output name suffix: <stem>_<suffix>.<ext> (default x<scale>, or x<outscale>; "
                                     "'' for none)")
    ap.add_argument("--format", type=str.lower, choices=sorted(FORMATS),
                    help="output format, any case (default: the input's; png for others)")
    ap.add_argument("--outscale", type=float, help="final size = this × the input: the model's ×s, then a Lanczos "
                                                   "resample (e.g. 1.5, or 3 with the ×2 model)")
    ap.add_argument("--width", type=int, help="final width in pixels (height keeps the aspect unless --height)")
    ap.add_argument("--height", type=int, help="final height in pixels")
    ap.add_argument("--tile", default="auto", help="tile size in LR pixels, 0 for whole image, or auto (default)")
    ap.add_argument("--tile-overlap", type=int, default=OVERLAP,
                    help=f"overlap between tiles in LR pixels (default {OVERLAP}; at most half the tile)")
    ap.add_argument("--max-memory", type=float, help="GB of working memory for --tile auto "
                                                      f"(default {default_max_memory_gb():.1f}: min(2, RAM/4))")
    ap.add_argument("--chop", action="store_true", help="the official test code's forward_chop (official pixels)")
    ap.add_argument("--ensemble", action="store_true", help="RCAN+: mean over the 8 flips/transposes (8× slower)")
    ap.add_argument("--device", choices=sorted(DEVICES), help="where to run (default: the best JAX finds)")
    options.dtype(ap, auto=True,
                  help="compute precision (default auto: bfloat16 where this CPU kind's stored measurements show "
                         "it faster for the model at no more than 0.01 dB on Set5, e.g. Intel Xeons with AMX; "
                         "float32 elsewhere: accel/run/precision.py); float32 is exact float32")
    options.conv(ap)
    ap.add_argument("--force", action="store_true", help="overwrite existing outputs and reports")
    ap.add_argument("--skip-existing", action="store_true", help="skip inputs whose output exists (resume a batch)")
    ap.add_argument("--max-pixels", type=int, help="raise Pillow's decompression-bomb limit (pixels per image)")
    options.quiet(ap, help="no progress bars, notices or per-image lines")
    options.json_output(ap, help="one JSON object per image on stdout (input, output, status, sizes, seconds, "
                                 "model)")
    ap.add_argument("--explain", action="store_true",
                    help="also write <output stem>.md (figures in <output stem>_figures/) and a self-contained "
                         ".html explaining the run")
    distributed.add_options(ap)
    return ap


def check_args(ap, args):
    """Usage errors, all before the model loads. Returns the tile setting."""
    tile = "auto"
    if args.tile != "auto":
        try:
            tile = int(args.tile) or None
        except ValueError:
            ap.error(f"--tile must be a number or auto, not {args.tile!r}")
        if tile is not None and tile < 8:
            ap.error("--tile must be at least 8")
    largest_overlap = (tile if isinstance(tile, int) else TILE_SIZES[0]) // 2
    if not 0 <= args.tile_overlap <= largest_overlap:
        ap.error(f"--tile-overlap must be between 0 and {largest_overlap} (half the "
                 f"{'tile' if isinstance(tile, int) else 'smallest automatic tile'})")
    if args.max_memory is not None and args.max_memory <= 0:
        ap.error("--max-memory must be positive")
    if args.outscale is not None and not 0 < args.outscale <= 16:
        ap.error("--outscale must be in (0, 16]")
    if args.outscale and (args.width or args.height):
        ap.error("--outscale and --width/--height both set the final size: give one")
    for name in ("width", "height"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            ap.error(f"--{name} must be positive")
    if args.model != "auto" and args.weights:
        ap.error("--model and --weights both choose the weights: give one")
    if args.strength is not None:
        if not 0 <= args.strength <= 1:
            ap.error("--strength must be in [0, 1]")
        if args.weights:
            ap.error("--strength interpolates the shipped models; it does not apply to --weights")
        if args.model not in ("auto", *BICUBIC_OF, *REAL_OF):
            ap.error(f"--strength needs a model with a real-photo twin ({', '.join([*BICUBIC_OF, *REAL_OF])})")
    if args.force and args.skip_existing:
        ap.error("--force and --skip-existing contradict each other")
    return tile


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    tile = check_args(ap, args)
    if args.explain:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            ap.error("--explain draws figures with matplotlib: pip install 'rcan-threeways[report]'")
    distributed.initialize(ap, args)
    if args.device:
        jax.config.update("jax_platforms", DEVICES[args.device])
    runtime.configure_from_env()
    try:   # a path this dtype or device cannot run is a usage error, whatever the weights
        if args.dtype != "auto":   # (auto's dtype depends on the model: checked as each loads)
            autotune.check_setting(args.conv, precision.choose(args.dtype, None).dtype)
    except ValueError as e:
        ap.error(str(e))
    try:   # start the backend now: a device JAX cannot start is a usage error before any work
        jax.devices()
    except RuntimeError as e:
        print(f"error: --device {args.device}: {str(e).splitlines()[0]}", file=sys.stderr)
        return cli.USAGE
    if args.weights is None and args.scale not in (None, 2):
        print(f"error: the shipped models are ×2; for ×{args.scale} pass --weights (e.g. RCAN_BIX{args.scale}.pt)",
              file=sys.stderr)
        return cli.USAGE
    scale = args.scale or 2
    if args.weights:   # the file's own scale, checked when it loads
        model = _load(args, None, None)
        if isinstance(model, int):
            return model
        scale = model.config.scale
    if args.suffix is None:
        args.suffix = default_suffix(args, scale)
    inputs = collect_inputs(args.inputs, args.suffix)
    if not inputs:
        ap.error("no images found")
    many = len(inputs) > 1 or any(Path(i).is_dir() for i in args.inputs)
    jobs = plan(ap, args, inputs, many)
    if jax.process_count() > 1:   # this process's part
        jobs = distributed.share(jobs, [_pixels(job.src) for job in jobs])
    show = not args.quiet and not args.json and sys.stderr.isatty()
    failures = 0
    for (name, strength), group in groups(jobs, args).items():
        if args.weights is None:
            model = _load(args, name, strength)
            if isinstance(model, int):
                return model
            if not args.quiet:
                print(f"model: {describe(name, strength)} for {_count(group)}: {group[0].choice.reason}; "
                      f"{args.precision.name}: {args.precision.reason}", file=sys.stderr)
        label = args.weights or f"shipped:{name}"
        for job, row in run_jobs(group, model, args, tile, many, show, label, name):
            failures += row["status"] == "failed"
            report(job, row, args)
    if jax.process_count() > 1:   # every process's outcome decides the exit status; process 0 reports
        counts = distributed.gather(np.array([len(jobs), failures]))
        total, failures = int(counts[0::2].sum()), int(counts[1::2].sum())
        if distributed.is_main() and not args.quiet:
            print(f"{total} images over {jax.process_count()} processes: {total - failures} done or skipped, "
                  f"{failures} failed", file=sys.stderr)
    return cli.SOME_FAILED if failures else cli.DONE


def _load(args, name, strength):
    """The model of a group (args.precision: its dtype and why), or the exit status of a usage error
    (unusable weights, a backend that fails, a --conv the dtype cannot run)."""
    chosen = precision.choose(args.dtype, None if args.weights else name)
    try:
        model = load_model(args.weights, scale=args.scale, conv=args.conv, model=name, dtype=chosen.dtype,
                           strength=strength)
        args.precision = chosen   # the group's, for its output line, JSON rows and reports
        return model
    except (WeightsError, ValueError, OSError) as e:
        msg = str(e)
        if args.weights and not msg.startswith(str(args.weights)):
            msg = f"{args.weights}: {msg}"
        print(f"error: {msg}", file=sys.stderr)
        return cli.USAGE
    except RuntimeError as e:   # JAX cannot start the asked-for backend
        print(f"error: --device {args.device}: {str(e).splitlines()[0]}", file=sys.stderr)
        return cli.USAGE


def pick(src: Path, args) -> tuple[Choice, float | None]:
    """The shipped model for one input, why, and the strength its pair is interpolated at (None: the file)."""
    if args.model == "auto":
        try:
            found = choose(src)
        # Unreadable, or over Pillow's bomb limit even to open: the run says why, as for any model.
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            found = Choice("deep", "could not be read")
        if args.strength is None:
            return found, None
        return Choice("real", f"--strength {args.strength:g} ({found.reason})", found.quality), args.strength
    reason = f"--model {args.model}" + (f" --strength {args.strength:g}" if args.strength is not None else "")
    return Choice(args.model, reason), args.strength


def groups(jobs: list[Job], args) -> dict[tuple, list[Job]]:
    """Jobs by the weights that run them, in order of first appearance: (shipped model, strength) each, or
    one group for --weights."""
    out: dict[tuple, list[Job]] = {}
    for job in jobs:
        if args.weights is None:
            job.choice, job.strength = pick(job.src, args)
            key = (job.choice.model, job.strength)
        else:
            key = (None, None)
        out.setdefault(key, []).append(job)
    return out


def job_choice(job: Job) -> dict | None:
    """What the report and --json say about the model that ran: name, why, and the real-photo share."""
    if job.choice is None:
        return None
    name, s = job.choice.model, job.strength
    strength = s if s is not None else (1.0 if name in BICUBIC_OF else 0.0 if name in REAL_OF else None)
    return {"model": describe(name, s), "reason": job.choice.reason, "strength": strength}


def describe(name: str, strength: float | None) -> str:
    if strength is None or strength in (0, 1):
        pair = BICUBIC_OF.get(name, name), REAL_OF.get(name, name)
        return name if strength is None else pair[int(strength)]
    bicubic, real = BICUBIC_OF.get(name, name), REAL_OF.get(name, name)
    return f"{real} at strength {strength:g} ({1 - strength:g}·{bicubic} + {strength:g}·{real})"


def _count(group) -> str:
    return str(group[0].src) if len(group) == 1 else f"{len(group)} images"


def _pixels(path: Path) -> float:
    """An image's pixel count from its header (for balancing processes); 0 if it cannot be read."""
    try:
        if not path.is_file():   # not a FIFO or device: opening one could block
            return 0.0
        with Image.open(path) as im:
            return float(im.width * im.height)
    except (OSError, ValueError):
        return 0.0


entry = cli.entry(main)   # the console script

if __name__ == "__main__":
    sys.exit(cli.run(main))
