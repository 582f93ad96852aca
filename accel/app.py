"""rcan-app: a local web app for people who do not live in a terminal (Gradio; `pip install -e ".[app]"`).

    rcan-app                      # http://127.0.0.1:7860: drop photos, compare before/after, download
    rcan-app --port 0             # a free port (printed)
    rcan-app --host 0.0.0.0       # reachable from other machines: it says so; nothing is public by default

Each image goes through the command line's own code (accel.upscale: the model chosen from the file, the
pipeline, the writer), so an output is pixel for pixel what `rcan-upscale` writes with the same settings.
Safe by default: it listens on 127.0.0.1; uploads are limited in bytes (--max-upload-mb) and pixels
(--max-pixels: a decompression bomb is one error line for that file); one model run at a time, queued,
the queue position shown; every upload and output lives in one temporary folder, removed at exit; a bad
file is an error for that file and the others finish.
"""
from __future__ import annotations

import atexit
import html
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from reference.support import cli

MODELS = ("auto", "deep", "compact", "real", "real-compact")
FORMATS = ("png", "jpg", "webp")
COLUMNS = ["run", "file", "status", "model", "why", "precision", "input", "output", "seconds"]


class AppState:
    """The app's state: the working folder, the loaded models (by weights and dtype) and one lock, so that
    a single model run happens at a time whatever the queue allows."""

    def __init__(self, workdir: Path, max_pixels: int):
        self.workdir, self.max_pixels = workdir, max_pixels
        self.models: dict = {}
        self.lock = threading.Lock()
        self.runs = 0

    def prune(self, keep_seconds: float = 3600) -> None:
        """Outputs of runs older than an hour (their download links with them): a long-running app's folder
        stays bounded."""
        for run in self.workdir.glob("run*"):
            if time.time() - run.stat().st_mtime > keep_seconds:
                shutil.rmtree(run, ignore_errors=True)

    def model(self, args, name, strength):
        from . import upscale
        key = (name, strength, args.dtype)
        if key not in self.models:
            self.models.clear()   # one model in memory at a time: the deep one is 16 MB, its compiles more
            model = upscale._load(args, name, strength)
            if isinstance(model, int):
                raise ValueError(f"the {name} model could not be loaded")
            self.models[key] = (model, args.precision)
        model, args.precision = self.models[key]
        return model

    @property
    def folder(self) -> Path:
        """The current run's outputs."""
        return self.workdir / f"run{self.runs}"

    def plan(self, src: Path, model: str, strength, outscale, fmt: str, explain: bool):
        """The command line's own arguments, tile setting and job (output name, reports) for one upload:
        `rcan-upscale SRC -o RUN/ --format FMT --model … [--strength …] [--outscale …] [--explain]`."""
        from . import upscale
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [str(src), "-o", str(self.folder) + os.sep, "--format", fmt, "--force", "--quiet", "--model", model,
                "--max-pixels", str(self.max_pixels)]
        if strength is not None:
            argv += ["--strength", f"{strength:g}"]
        if outscale and float(outscale) != 2:
            argv += ["--outscale", f"{float(outscale):g}"]
        if explain:
            argv.append("--explain")
        ap = upscale.parser()
        args = ap.parse_args(argv)
        tile = upscale.check_args(ap, args)
        args.suffix = upscale.default_suffix(args, 2)   # (the shipped models are ×2)
        (job,) = upscale.plan(ap, args, [(src, Path(src.name))], False)
        return args, tile, job

    def upscale_one(self, src: Path, model: str, strength, outscale, fmt: str, explain: bool, progress):
        """One uploaded file, as `rcan-upscale` runs it (plan); returns the table row, the output path (None
        on failure) and the reports written."""
        from PIL import Image

        from . import api, upscale
        from .run import pipeline
        from .run.images import ImageError
        row = dict.fromkeys(COLUMNS, "")
        row.update(run=self.runs, file=src.name)
        try:
            args, tile, job = self.plan(src, model, strength, outscale, fmt, explain)
            job.choice, job.strength = upscale.pick(src, args)
            loaded = self.model(args, job.choice.model, job.strength)
            try:   # the header's size, for the message (upscale_file decodes and checks the file)
                with Image.open(src) as im:
                    size = (im.height, im.width)
            except (OSError, ValueError, Image.DecompressionBombError):
                size = None
            if size and api.first_run(loaded, *pipeline.plan_for(size, loaded.config, tile).call_shape(size)):
                progress(0.1, desc=f"{src.name}: first run at this size here: timing the convolution paths and "
                                   "compiling (once)")
            else:
                progress(0.1, desc=f"{src.name}: upscaling")
            t0 = time.perf_counter()
            result = upscale.upscale_file(job, loaded, args, tile, False, job.choice.model)
            row.update(status="done", model=upscale.describe(job.choice.model, job.strength), why=job.choice.reason,
                       precision=args.precision.name, input="×".join(map(str, result["input_size"])),
                       output="×".join(map(str, result["output_size"])), seconds=f"{time.perf_counter() - t0:.1f}")
            return row, job.dst, result.get("reports", ())
        except (ImageError, OSError, ValueError) as e:
            row.update(status=f"error: {e}")
            return row, None, ()
        except SystemExit:   # argparse's usage error (check_args, plan): already printed to stderr
            row.update(status="error: invalid settings")
            return row, None, ()


def _before(src: Path, out: Path):
    """The input enlarged to the output's size (bicubic), for the slider's left side."""
    from PIL import Image, ImageOps
    with Image.open(src) as im, Image.open(out) as res:
        im = ImageOps.exif_transpose(im).convert("RGB")
        return im.resize(res.size, Image.BICUBIC), res.convert("RGB")


def _explanation(reports) -> str:
    """The report's self-contained HTML page, shown in the page (an iframe keeps its styles apart)."""
    page = next((Path(p) for p in reports if str(p).endswith(".html")), None)
    if page is None or not page.is_file():
        return ""
    return (f'<iframe title="explanation" style="width:100%;height:900px;border:0" '
            f'srcdoc="{html.escape(page.read_text(encoding="utf-8"), quote=True)}"></iframe>')


def build(state: AppState):
    import gradio as gr

    from .run.choose import QUALITY_THRESHOLD

    def run(files, model, use_strength, strength, outscale, fmt, explain, progress=gr.Progress()):
        if not files:
            raise gr.Error("drop one or more images first")
        with state.lock:
            state.prune()
            state.runs += 1
            rows, outputs, slider, reports = [], [], None, ()
            for i, f in enumerate(files):
                src = Path(f if isinstance(f, str) else f.name)
                progress(i / len(files), desc=src.name)
                row, dst, rep = state.upscale_one(src, model, strength if use_strength else None, outscale, fmt,
                                                    explain and i == 0, progress)
                rows.append([row[c] for c in COLUMNS])
                if dst is not None:
                    outputs.append(str(dst))
                    if slider is None:
                        slider, reports = _before(src, dst), rep
            bundle = None
            if len(outputs) > 1:
                bundle = state.folder / "upscaled.zip"
                with zipfile.ZipFile(bundle, "w") as z:
                    for p in outputs:
                        z.write(p, Path(p).name)
            downloads = outputs + ([str(bundle)] if bundle else [])
            return rows, slider, downloads or None, _explanation(reports)

    # Gradio's own copies of uploads and outputs: removed after an hour, checked every hour.
    with gr.Blocks(title="RCAN ×2 upscaler", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# RCAN ×2 upscaler\nDrop photos, compare before and after, download. Runs on this machine; "
                    "nothing leaves it.")
        with gr.Row():
            with gr.Column(scale=1):
                # Any file: a bad one is its own error row, the others are done.
                files = gr.File(label="Images", file_count="multiple", type="filepath")
                model = gr.Dropdown(list(MODELS), value="auto", label="Model",
                                    info=f"auto: a JPEG below quality {QUALITY_THRESHOLD} or a lossy WebP gets the real-photo model, "
                                         "a lossless file the deep one (the table says why)")
                use_strength = gr.Checkbox(False, label="Set the strength (else the model's own)")
                strength = gr.Slider(0, 1, value=0.5, step=0.05, label="Strength",
                                     info="0: the bicubic-trained model, 1: the real-photo one "
                                          "(cleans JPEG, blur, noise)")
                outscale = gr.Number(2, label="Scale", minimum=0.25, maximum=16,
                                     info="×2 by the model; another factor resamples its output (Lanczos)")
                fmt = gr.Dropdown(list(FORMATS), value="png", label="Output format")
                explain = gr.Checkbox(False, label="Explain this run (the report, for the first image)")
                go = gr.Button("Upscale", variant="primary")
            with gr.Column(scale=2):
                with gr.Tab("Result"):
                    slider = gr.ImageSlider(label="Before (bicubic) | after (RCAN)", type="pil")
                    table = gr.Dataframe(headers=COLUMNS, label="Per image", interactive=False, wrap=True)
                    downloads = gr.File(label="Download (one by one, or all as a zip)", file_count="multiple")
                with gr.Tab("Explanation"):
                    report = gr.HTML()
        go.click(run, [files, model, use_strength, strength, outscale, fmt, explain],
                 [table, slider, downloads, report], api_name="upscale", concurrency_limit=1)
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


def parser():
    ap = cli.parser("rcan-app", __doc__)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: a free one)")
    ap.add_argument("--max-upload-mb", type=float, default=50.0, help="largest upload in MB (default 50)")
    ap.add_argument("--max-pixels", type=int, default=16_000_000,
                    help="largest input in pixels (default 16,000,000; more is refused as a decompression bomb)")
    return ap


def _free_port(host: str) -> int:
    import socket
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if not 0 <= args.port <= 65535:
        ap.error("--port must be from 0 to 65535")
    if args.max_upload_mb <= 0 or args.max_pixels <= 0:
        ap.error("--max-upload-mb and --max-pixels must be positive")
    try:
        import gradio  # noqa: F401
    except ImportError:
        print('error: the app needs Gradio: pip install -e ".[app]"', file=sys.stderr)
        return cli.USAGE
    from .platform import runtime
    runtime.configure_from_env()
    workdir = Path(tempfile.mkdtemp(prefix="rcan-app-"))
    atexit.register(shutil.rmtree, workdir, True)
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "uploads")   # uploads too: all under one folder, removed at exit
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    port = args.port or _free_port(args.host)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: other machines can reach this app", file=sys.stderr)
    demo = build(AppState(workdir, args.max_pixels))
    # SIGTERM as Ctrl+C: Gradio closes the server, and the temporary folder is removed on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"rcan-app: http://{args.host}:{port}/ (Ctrl+C to stop; uploads and outputs in {workdir}, removed then)",
          file=sys.stderr, flush=True)
    demo.launch(server_name=args.host, server_port=port, share=False, inbrowser=False, show_error=True,
                max_file_size=int(args.max_upload_mb * 1024 * 1024), quiet=True)
    return cli.DONE


entry = cli.entry(main)

if __name__ == "__main__":
    sys.exit(cli.run(main))
