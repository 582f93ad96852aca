"""Benchmark RCAN: the NumPy reference, accel (JAX) and PyTorch on the same weights and inputs.

Examples:
    python -m accel.bench                                   # official ×2 and compact, 64/128/256, table
    python -m accel.bench --models official --sizes 128 256 --rounds 3 --json
    python -m accel.bench --impls accel --xla-flags "--xla_cpu_use_onednn=true"   # try an XLA option
    RCAN_CONV=winograd python -m accel.bench --impls accel torch-nchw      # accel on a fixed convolution path

Each case runs in a fresh process (so peak memory is its own): build the model from the same random
weights, warm up (compile), then time `--repeats` runs and report the median; `--rounds` repeats all
implementations in interleaved rounds. accel's shapes are compiled into the persistent cache before
the rounds, as on any second run of a shape (`--compile` measures the cold compile). Peak memory
("peak MB") is the highest resident set during the timed runs above the resident set before the
first call (both after garbage collection and malloc_trim, the same for every implementation);
"1st MB" is the same for the first call. GFLOP/s counts 2 FLOPs
per multiply-add of the convolutions; the peak is cores × FMA width × clock, from /proc/cpuinfo.
PyTorch (when installed) runs the official architecture in channels_last with all cores, or CUDA.

On a GPU (`python -m accel.bench --sizes 64 128 256 1080p`): accel in float32 (full precision), TF32
and bfloat16 against torch CUDA in float32 (eager NCHW and channels_last), TF32 and bfloat16; "1080p"
is a 1920×1080 input upscaled in tiles (TILE_1080P, overlap 16, 4 per call, ramp-blended, the same
code for both). There "peak MB" is the device memory allocated above the weights and input (jax
memory_stats / torch.cuda.max_memory_allocated) and "% peak" the share of the datasheet's dense peak
for that precision; accel's rows also carry XLA's own account of the compiled forward ("xla_memory_mb":
temporaries, cuDNN's workspaces included, arguments, outputs).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from reference.support import cli

from . import options
from .platform import hardware, runtime

IMPLS = ("reference", "accel", "accel-tf32", "accel-bf16", "torch", "torch-nchw", "torch-tf32", "torch-bf16")
GPU_IMPLS = ["accel", "accel-tf32", "accel-bf16", "torch-nchw", "torch", "torch-tf32", "torch-bf16"]
TILE_1080P = 512


def precision(impl: str) -> str:
    return "bfloat16" if impl.endswith("-bf16") else "tf32" if impl.endswith("-tf32") else "float32"


def parse_size(size: str) -> tuple[int, int, bool]:
    """'128' -> a 128×128 input, whole; '1080p' -> 1920×1080, in tiles. Returns (height, width, tiled)."""
    if str(size).lower() == "1080p":
        return 1080, 1920, True
    return int(size), int(size), False


def _torch_forward(net, device, dtype):
    """numpy NHWC batch -> numpy NHWC output through the torch net (the stand-in for accel.forward that
    lets the same tiling code drive torch); every sample must fill the tile (no padding mask)."""
    import numpy as np
    import torch

    def forward(model, x, mask=None):
        if mask is not None and not all(np.all(m == m.flat[0]) for m in np.asarray(mask)):
            raise ValueError("torch tiles must fill the tile shape (no masked padding)")
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).to(device, dtype)
        with torch.inference_mode():
            y = net(t.contiguous(memory_format=torch.channels_last) if net.channels_last else t)
        return y.float().permute(0, 2, 3, 1).cpu().numpy()
    return forward


def _jax_memory(device) -> tuple[int, int]:
    stats = device.memory_stats() or {}
    return stats.get("bytes_in_use", 0), stats.get("peak_bytes_in_use", 0)


@dataclasses.dataclass
class Case:
    """What one measurement times: call() runs the network once and waits for it."""
    call: object
    device: str = "cpu"
    device_name: str | None = None
    gpu_memory: object = None   # () -> (bytes allocated on the accelerator, their peak), where there is one
    xla_memory: object = None   # () -> XLA's own account of the compiled forward (temp, argument, output MB)
    conv: str | None = None     # accel's convolution setting
    path: object = None         # () -> the convolution path that setting took (after the first call)


# Each case imports only its own implementation (inside the function): a case runs in a fresh process,
# and torch's or JAX's libraries in that process would count in the other's resident set.
def _reference_case(impl, config, weights, lr, tiled, loops) -> Case:
    import reference
    return Case(lambda: reference.forward(weights, config, lr))


def _accel_case(impl, config, weights, lr, tiled, loops) -> Case:
    import jax
    import jax.numpy as jnp

    import accel

    from .conv import autotune
    from .run.runner import super_resolve
    from .run.tiles import BATCH, Plan
    case = Case(None, jax.devices()[0].platform)
    if case.device != "cpu":
        # JAX's default precision lets a GPU run float32 convolutions in TF32: name the precision.
        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if impl == "accel-tf32" else "highest")
        case.device_name = jax.devices()[0].device_kind
        case.gpu_memory = functools.partial(_jax_memory, jax.devices()[0])
    # The convolution path as the CLIs take it: $RCAN_CONV, else auto (on a GPU: XLA's convolution).
    case.conv = autotune.env_setting()
    m = accel.model_from_weights(weights, config, loops or accel.api.DEFAULT_LOOPS,
                                 dtype=jnp.bfloat16 if impl == "accel-bf16" else jnp.float32, conv=case.conv)
    if case.device != "cpu":
        case.xla_memory = functools.partial(accel.api.compiled_memory, m, (1, *lr.shape))
    if tiled:
        case.call = lambda: super_resolve(m, lr, Plan(TILE_1080P, batch=BATCH))
    else:
        x = jnp.asarray(lr[None])
        case.call = lambda: accel.forward(m, x).block_until_ready()
        case.path = lambda: autotune.choose(1, *lr.shape[:2], config.n_feats, m.dtype, case.conv)
    return case


def _torch_case(impl, config, weights, lr, tiled, loops) -> Case:
    import torch

    from tools import torch_rcan  # the official architecture (a source checkout's tools/)

    from .run.runner import super_resolve
    from .run.tiles import BATCH, Plan
    torch.set_num_threads(hardware.cores())
    net = torch_rcan.from_weights(weights, config)
    dtype = torch.bfloat16 if impl == "torch-bf16" else torch.float32
    case = Case(None)
    if torch.cuda.is_available():
        case.device, case.device_name = "cuda", torch.cuda.get_device_name()
        # cuDNN's default is TF32 for float32 convolutions: float32 means float32 here.
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = impl == "torch-tf32"
        torch.backends.cudnn.benchmark = True   # its fastest kernels (picked in the warm-up)
        net = net.cuda()
        case.gpu_memory = lambda: (torch.cuda.memory_allocated(), torch.cuda.max_memory_allocated())
    net = net.to(dtype)
    net.channels_last = impl != "torch-nchw"
    if net.channels_last:
        net = net.to(memory_format=torch.channels_last)
    forward = _torch_forward(net, case.device, dtype)
    if tiled:   # the same tiles, ramps and batches as accel's
        case.call = lambda: super_resolve(net, lr, Plan(TILE_1080P, batch=BATCH), forward=forward)
        return case
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].to(case.device, dtype)
    if net.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def call():
        with torch.inference_mode():
            y = net(x)
        if case.device == "cuda":
            torch.cuda.synchronize()
        return y
    case.call = call
    return case


def run_case(impl: str, model: str, size: str, repeats: int, seed: int = 0, loops: str | None = None) -> dict:
    """One measurement, in this process."""
    import gc

    import numpy as np

    from reference import init_weights
    from reference.config import PRESETS
    config = PRESETS[model](2)
    weights = init_weights(config, seed)
    height, width, tiled = parse_size(size)
    lr = np.random.default_rng(seed).uniform(0, 255, (height, width, 3)).astype(np.float32)
    make = _reference_case if impl == "reference" else _accel_case if impl.startswith("accel") else _torch_case
    case = make(impl, config, weights, lr, tiled, loops)
    # The same starting line for every implementation: collected garbage handed back to the OS.
    gc.collect()
    runtime.release_free_memory()
    base = hardware.rss_bytes("VmRSS")
    gpu_base = case.gpu_memory()[0] if case.gpu_memory else 0
    hardware.reset_peak_rss()
    t = time.perf_counter()
    case.call()
    first = time.perf_counter() - t
    first_peak = case.gpu_memory()[1] - gpu_base if case.gpu_memory else hardware.rss_bytes("VmHWM") - base
    # Steady state: the peak over the timed runs, still counted from the resident set before the first
    # call, so whatever the warm-up (compilation) left resident counts too.
    hardware.reset_peak_rss()
    if case.gpu_memory and impl.startswith("torch"):
        # cuDNN's kernel search (the warm-up) takes GBs of scratch; accel's is done at compile time,
        # which the persistent cache has already paid for (jax cannot reset its peak).
        import torch
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        case.call()
        times.append(time.perf_counter() - t)
    # On a GPU: the device's peak above the weights and input (jax's since the start: first call included).
    peak = case.gpu_memory()[1] - gpu_base if case.gpu_memory else hardware.rss_bytes("VmHWM") - base
    row = {"impl": impl, "model": model, "size": size, "device": case.device, "device_name": case.device_name,
           "median_s": statistics.median(times) if times else first,
           "first_call_s": first, "times": times, "peak_extra_mb": peak / 1e6,
           "first_call_peak_extra_mb": first_peak / 1e6}
    if case.conv:
        row["conv"] = case.conv
    if case.path:   # decided by the first call: this asks the process's record
        row["conv_path"] = case.path()
    if case.xla_memory:   # after the timed runs: asking XLA compiles (from the cache) again
        row["xla_memory_mb"] = case.xla_memory()
    return row


def gflop(model: str, size: str) -> float:
    """Convolution FLOPs of the whole input (a tiled run's overlap recomputation not counted)."""
    from reference.config import PRESETS
    from reference.weights import stages
    height, width, _ = parse_size(size)
    return 2 * sum(r["macs"] for r in stages(PRESETS[model](2), height, width)) / 1e9


def share_of_peak(row: dict, cpu_peak: float | None) -> float | None:
    if row["device"] == "cpu":
        return row["gflops"] / cpu_peak if cpu_peak else None
    name = row.get("device_name") or ""
    chip = next((k for k in hardware.GPU_PEAK_TFLOPS if k in name and "PCIe" not in name), None)
    return row["gflops"] / (1000 * hardware.GPU_PEAK_TFLOPS[chip][precision(row["impl"])]) if chip else None


def measure(impl, model, size, repeats, xla_flags=None, loops=None) -> dict:
    env = dict(os.environ)
    if xla_flags:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + xla_flags).strip()
    cmd = [sys.executable, "-m", "accel.bench", "--case", impl, model, str(size), str(repeats)]
    r = subprocess.run(cmd + (["--loops", loops] if loops else []), capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return {"impl": impl, "model": model, "size": size, "error": r.stderr.strip().splitlines()[-1:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


_PEAK_WRAPPER = """
import runpy, sys
out = sys.argv.pop(1)
code = 0
try:
    runpy.run_module("accel.upscale", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code or 0
import json
from accel import api
from accel.platform.hardware import rss_bytes
# The peak resident set, and the distinct input shapes the model ran (each one compiled once).
open(out, "w").write(json.dumps({"peak": rss_bytes("VmHWM"), "shapes": len(api._RUN)}))
sys.exit(code)
"""


def bench_upscale(size: str, weights: str | None, extra: list[str]) -> dict:
    """The upscale CLI on a WxH photo-like image (the example butterfly, bicubic-enlarged), in a child
    process: wall time and the child's own peak resident set (its VmHWM at exit)."""
    import tempfile
    from pathlib import Path

    from PIL import Image
    w, h = (int(v) for v in size.lower().split("x"))
    src = Path(__file__).parent / "examples" / "butterfly_lr.png"
    with tempfile.TemporaryDirectory() as d:
        img = Path(d) / f"photo_{w}x{h}.png"
        Image.open(src).convert("RGB").resize((w, h), Image.BICUBIC).save(img)
        peak_file = Path(d) / "peak"
        cmd = [sys.executable, "-c", _PEAK_WRAPPER, str(peak_file), str(img), "--quiet", *extra]
        if weights:
            cmd += ["--weights", weights]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t
        out = Image.open(Path(d) / f"photo_{w}x{h}_x2.png").size if r.returncode == 0 else None
        peak = json.loads(peak_file.read_text())["peak"] if peak_file.is_file() else 0
    from .api import DEFAULT_MODEL
    model = extra[extra.index("--model") + 1] if "--model" in extra else DEFAULT_MODEL
    return {"input": [w, h], "output": out, "weights": weights or f"shipped {model}", "options": extra,
            "seconds": round(seconds, 1), "peak_rss_gb": round(peak / 1e9, 3), "returncode": r.returncode,
            "stderr": r.stderr.strip()[-300:]}


def bench_folder(folder: str, weights: str | None, extra: list[str], runs: int = 2) -> list[dict]:
    """`python -m accel.upscale FOLDER -o TMP --json` in a child process, first with an empty compilation
    cache, then again on the same cache: wall time, the model's own time (the sum of the images' compute
    seconds), compiled input shapes, images per second and peak resident set."""
    import tempfile
    from pathlib import Path
    out = []
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, RCAN_JAX_CACHE=str(Path(d) / "cache"))
        for k in range(runs):
            stats = Path(d) / f"stats{k}"
            cmd = [sys.executable, "-c", _PEAK_WRAPPER, str(stats), folder, "-o", str(Path(d) / f"out{k}"),
                   "--json", *extra] + (["--weights", weights] if weights else [])
            t = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            wall = time.perf_counter() - t
            rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
            done = [row for row in rows if row["status"] == "done"]
            compute = sum(row["seconds"] for row in done)
            info = json.loads(stats.read_text()) if stats.is_file() else {"peak": 0, "shapes": None}
            out.append({"run": "first (empty cache)" if k == 0 else "again (cached)", "images": len(done),
                        "failed": len(rows) - len(done), "wall_s": round(wall, 1), "compute_s": round(compute, 1),
                        "wall_over_compute": round(wall / compute, 3) if compute else None,
                        "images_per_s": round(len(done) / wall, 2), "compiled_shapes": info["shapes"],
                        "peak_rss_gb": round(info["peak"] / 1e9, 3), "returncode": r.returncode,
                        "stderr": r.stderr.strip()[-300:]})
    return out


def bench_conv(channels: int, size: int) -> dict:
    """The measurement accel/conv/autotune.py makes, for every path: ms and GFLOP/s of one conv."""
    import jax.numpy as jnp

    from .conv import autotune
    flop = 2 * size * size * 9 * channels * channels
    out = {"channels": channels, "size": size}
    times = autotune.time_paths(autotune.paths(jnp.float32, channels), 1, size, size, channels, jnp.float32)
    for name, t in times.items():
        per_conv = min(t) / 6   # the best run; the chain has 6
        out[name] = {"ms": round(per_conv * 1e3, 3), "gflops": round(flop / per_conv / 1e9, 1)}
    return out


def bench_compile(model: str, size: int) -> dict:
    """Compile time of accel's forward: cold (empty persistent cache) and warm (a second process that
    finds the cache), each as first call minus a steady call, in fresh processes."""
    import tempfile
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for label in ("cold", "cached"):
            env = dict(os.environ, RCAN_JAX_CACHE=d)
            r = subprocess.run([sys.executable, "-m", "accel.bench", "--case", "accel", model, str(size), "2"],
                               capture_output=True, text=True, env=env, check=True)
            case = json.loads(r.stdout.strip().splitlines()[-1])
            out[label + "_compile_s"] = round(case["first_call_s"] - case["median_s"], 3)
            out[label + "_first_call_s"] = round(case["first_call_s"], 3)
    return {"model": model, "size": size, **out}


def measure_group(impls, model: str, size: str, args) -> list[dict]:
    """Every implementation on one (model, size), in `args.rounds` interleaved rounds (order reversed
    every other round, so a drift of the machine's clock or load hits all alike). Per implementation:
    the median over all rounds' timed runs, and the median of the rounds' peak memories."""
    for impl in impls:
        if impl.startswith("accel") and runtime.cache_dir() is not None:
            # Compile once into the persistent cache first: the rounds then measure what every run of a
            # known shape costs (the cold compile has its own measurement: --compile). On a GPU this also
            # keeps the compiler's kernel search out of the device-memory peak.
            measure(impl, model, size, 0, args.xla_flags, args.loops)
    runs: dict[str, list[dict]] = {impl: [] for impl in impls}
    for k in range(args.rounds):
        for impl in (impls if k % 2 == 0 else impls[::-1]):
            runs[impl].append(measure(impl, model, size, args.repeats,
                                      args.xla_flags if impl.startswith("accel") else None, args.loops))
            print(f"  measured {impl} {model} {size} (round {k + 1}/{args.rounds})", file=sys.stderr)
    group = []
    for impl in impls:
        ok = [r for r in runs[impl] if "median_s" in r]
        if not ok:
            group.append(runs[impl][0])
            continue
        r = dict(ok[0])
        r["times"] = [t for x in ok for t in x["times"]]
        r["median_s"] = statistics.median(r["times"])
        r["rounds"] = len(ok)
        for key in ("peak_extra_mb", "first_call_peak_extra_mb", "first_call_s"):
            r[key] = statistics.median(x[key] for x in ok)
        group.append(r)
    return group


def parser() -> argparse.ArgumentParser:
    ap = cli.parser("python -m accel.bench", __doc__)
    ap.add_argument("--models", nargs="+", default=["official", "compact"], choices=["official", "deep", "compact"],
                    help="which RCAN sizes")
    ap.add_argument("--sizes", nargs="+", default=["64", "128", "256"],
                    help="square LR input sizes; 1080p: a 1920×1080 input in tiles (for GPUs)")
    ap.add_argument("--impls", nargs="+", default=None, choices=IMPLS,
                    help="implementations (default on a CPU: reference, accel, torch if installed; on a GPU: "
                         "accel in float32/TF32/bf16 and torch in NCHW float32 and channels_last "
                         "float32/TF32/bf16)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up (median reported)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds of all implementations, each in "
                                                          "fresh processes (medians over all rounds)")
    ap.add_argument("--xla-flags", help="extra XLA_FLAGS for the accel cases")
    ap.add_argument("--loops", choices=["scan", "mixed", "unrolled"], help="accel block loops (default: accel's)")
    options.json_output(ap)
    ap.add_argument("--upscale", metavar="WxH", help="instead: time python -m accel.upscale on a WxH image and "
                                                     "report its peak memory (e.g. 2000x1500)")
    ap.add_argument("--weights", help="with --upscale: weights to pass (default: each shipped model in turn, "
                                      "timed against the compact one, unless --upscale-args names a --model)")
    ap.add_argument("--upscale-args", default="", help="with --upscale: extra upscale options, e.g. '--tile 256'")
    ap.add_argument("--folder", metavar="DIR", help="instead: upscale a folder twice (empty cache, then cached): "
                                                    "wall vs model time, compiled shapes, images/s, peak memory")
    ap.add_argument("--compile", action="store_true", help="instead: accel's cold and cached compile times")
    ap.add_argument("--conv-channels", type=int, metavar="C", help="instead: one 3×3 conv (C → C channels) at each "
                                                                   "size, by each convolution path")
    ap.add_argument("--table", metavar="JSON", help="instead: print the table of a saved --json result")
    ap.add_argument("--case", nargs=4, metavar=("IMPL", "MODEL", "SIZE", "REPEATS"), help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    # Let each case's process take the accelerator's memory as it needs it (not 75% up front), so a
    # case's peak is its own and torch and JAX processes can share the card.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    runtime.configure_from_env()
    if args.case:
        impl, model, size, repeats = args.case
        print(json.dumps(run_case(impl, model, size, int(repeats), loops=args.loops)))
        return 0
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return 0
    if args.compile:
        print(json.dumps([bench_compile(m, int(s)) for m in args.models for s in args.sizes], indent=2))
        return 0
    if args.conv_channels:
        print(json.dumps([bench_conv(args.conv_channels, int(s)) for s in args.sizes], indent=2))
        return 0
    if args.folder:
        print(json.dumps(bench_folder(args.folder, args.weights, args.upscale_args.split()), indent=2))
        return 0
    if args.upscale:
        extra = args.upscale_args.split()
        if args.weights or "--model" in extra:
            print(json.dumps(bench_upscale(args.upscale, args.weights, extra), indent=2))
            return 0
        # Every shipped network on the same photo, one after the other, each against the compact one (the
        # real-photo models are the same networks as deep and compact: the same time).
        from .api import BICUBIC_OF
        runs = {name: bench_upscale(args.upscale, None, [*extra, "--model", name]) for name in BICUBIC_OF.values()}
        base = runs["compact"]["seconds"]
        print(json.dumps([{**r, "ratio_to_compact": round(r["seconds"] / base, 2)} for r in runs.values()], indent=2))
        return 0
    import importlib.util

    import jax

    from .conv import cpu_kernel
    on_cpu = jax.default_backend() == "cpu"
    impls = args.impls
    if impls is None:
        impls = ["reference", "accel"] if on_cpu else [i for i in GPU_IMPLS if i.startswith("accel")]
        if importlib.util.find_spec("torch"):
            impls += ["torch"] if on_cpu else [i for i in GPU_IMPLS if i.startswith("torch")]
    peak = hardware.cpu_peak_gflops()
    rows = []
    for model in args.models:
        for size in args.sizes:
            group = measure_group(impls, model, size, args)
            for r in group:
                r["gflop"] = gflop(model, size)
                if "median_s" in r:
                    r["gflops"] = r["gflop"] / r["median_s"]
                    r["share_of_peak"] = share_of_peak(r, peak)
            # Each accel precision against torch in the same precision: channels_last, or NCHW where it is
            # the only float32 torch measured (--impls accel torch-nchw).
            torch_rows = sorted((r for r in group if r["impl"].startswith("torch") and "median_s" in r),
                                key=lambda r: "nchw" in r["impl"])
            peer = {p: next((r for r in torch_rows if precision(r["impl"]) == p), None)
                    for p in ("float32", "tf32", "bfloat16")}
            for r in group:
                t = peer[precision(r["impl"])]
                r["ratio_to_torch"] = r["median_s"] / t["median_s"] if t and "median_s" in r else None
                r["memory_to_torch"] = (r["peak_extra_mb"] / t["peak_extra_mb"]
                                        if t and t["peak_extra_mb"] and "peak_extra_mb" in r else None)
            rows += group
    amx = cpu_kernel.amx_status()   # on a CPU with AMX: whether the bfloat16 kernels got the tiles here
    cpu = hardware.describe_cpu() + (f"; {amx}" if amx else "")
    data = {"cpu": cpu, "peak_gflops": peak, "xla_flags": args.xla_flags, "rows": rows}
    print(json.dumps(data, indent=2) if args.json else table(data))
    return 0


def table(data: dict) -> str:
    peak, rows = data["peak_gflops"], data["rows"]
    cpu = f"{data['cpu']}; " if data.get("cpu") else ""   # files written before the CPU was recorded
    lines = [cpu + (f"machine peak ≈ {peak:.0f} GFLOP/s (fp32)" if peak else "machine peak unknown"),
             f"{'impl':<11} {'model':<9} {'size':>5} {'device':<6} {'median s':>9} {'GFLOP/s':>8} {'% peak':>7} "
             f"{'/ torch':>8} {'peak MB':>8} {'/ torch':>8} {'1st call s':>10} {'1st MB':>7}  conv path"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['impl']:<11} {r['model']:<9} {r['size']:>5} failed: {r['error']}")
            continue
        share = f"{100 * r['share_of_peak']:.0f}%" if r.get("share_of_peak") else "-"
        ratio = f"{r['ratio_to_torch']:.2f}" if r.get("ratio_to_torch") else "-"
        mem = f"{r['memory_to_torch']:.2f}" if r.get("memory_to_torch") else "-"
        first_mb = f"{r['first_call_peak_extra_mb']:.0f}" if "first_call_peak_extra_mb" in r else "-"
        lines.append(f"{r['impl']:<11} {r['model']:<9} {r['size']:>5} {r['device']:<6} {r['median_s']:>9.3f} "
                     f"{r['gflops']:>8.1f} {share:>7} {ratio:>8} {r['peak_extra_mb']:>8.0f} {mem:>8} "
                     f"{r['first_call_s']:>10.2f} {first_mb:>7}  {r.get('conv_path', '-')}")
    return "\n".join(lines)


entry = cli.entry(main)   # the console script

if __name__ == "__main__":
    sys.exit(cli.run(main))
