"""Benchmark RCAN: the NumPy reference, accel (JAX) and PyTorch on the same weights and inputs.

Examples:
    python -m accel.bench                                   # official ×2 and compact, 64/128/256, table
    python -m accel.bench --models official --sizes 128 256 --rounds 3 --json
    python -m accel.bench --impls accel --xla-flags "--xla_cpu_use_onednn=true"   # try an XLA option

Each case runs in a fresh process (so peak memory is its own): build the model from the same random
weights, warm up (compile), then time `--repeats` runs and report the median; `--rounds` repeats all
implementations in interleaved rounds. accel's shapes are compiled into the persistent cache before
the rounds, as on any second run of a shape (`--compile` measures the cold compile). Peak memory
("peak MB") is the highest resident set during the timed runs above the resident set before the
first call (both after garbage collection and malloc_trim, the same for every implementation);
"1st MB" is the same for the first call. GFLOP/s counts 2 FLOPs
per multiply-add of the convolutions; the peak is cores × FMA width × clock, from /proc/cpuinfo.
PyTorch (when installed) runs the official architecture in channels_last with all cores, or CUDA.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

IMPLS = ("reference", "accel", "accel-bf16", "torch")


def peak_gflops() -> float | None:
    """fp32 peak of this CPU: cores × FLOPs per cycle × MHz (from /proc/cpuinfo), when FMA is present."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return None
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    if not mhz or " fma" not in flags:
        return None
    # Two FMA pipes of 8 fp32 lanes; Intel's AVX-512 doubles the width, AMD Zen 4 runs it double-pumped.
    per_cycle = 64 if " avx512f" in flags and "GenuineIntel" in info else 32
    return len(os.sched_getaffinity(0)) * per_cycle * statistics.median(mhz) / 1000


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")   # resets VmHWM to the current resident set
    except OSError:
        pass  # no /proc (not Linux): the peak then also counts the setup


def run_case(impl: str, model: str, size: int, repeats: int, seed: int = 0) -> dict:
    """One measurement, in this process."""
    import numpy as np

    from reference import RCANConfig, init_weights
    config = RCANConfig.official(2) if model == "official" else RCANConfig.compact(2)
    weights = init_weights(config, seed)
    lr = np.random.default_rng(seed).uniform(0, 255, (size, size, 3)).astype(np.float32)
    device = "cpu"
    if impl == "reference":
        import reference
        call = lambda: reference.forward(weights, config, lr)
    elif impl.startswith("accel"):
        import jax
        import jax.numpy as jnp

        import accel
        layout = os.environ.get("RCAN_BENCH_LAYOUT") or accel.api.DEFAULT_LAYOUT
        m = accel.model_from_weights(weights, config, layout,
                                     dtype=jnp.bfloat16 if impl == "accel-bf16" else jnp.float32)
        x = jnp.asarray(lr[None])
        call = lambda: accel.forward(m, x).block_until_ready()
        device = jax.devices()[0].platform
    elif impl == "torch":
        import torch
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
        import torch_rcan
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        net = torch_rcan.from_weights(weights, config)
        x = torch.from_numpy(lr).permute(2, 0, 1)[None]
        if torch.cuda.is_available():
            device = "cuda"
            net, x = net.cuda(), x.cuda()
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

        def call():
            with torch.inference_mode():
                y = net(x)
            if device == "cuda":
                torch.cuda.synchronize()
            return y
    else:
        raise ValueError(impl)
    # The same starting line for every implementation: collected garbage handed back to the OS.
    import gc

    from accel import runtime
    gc.collect()
    runtime.release_free_memory()
    base = _rss("VmRSS")
    _reset_peak()
    t = time.perf_counter()
    call()
    first = time.perf_counter() - t
    first_peak = _rss("VmHWM") - base
    # Steady state: the peak over the timed runs, still counted from the resident set before the first
    # call, so whatever the warm-up (compilation) left resident counts too.
    _reset_peak()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return {"impl": impl, "model": model, "size": size, "device": device,
            "median_s": statistics.median(times) if times else first,
            "first_call_s": first, "times": times, "peak_extra_mb": (_rss("VmHWM") - base) / 1e6,
            "first_call_peak_extra_mb": first_peak / 1e6}


def gflop(model: str, size: int) -> float:
    from reference import RCANConfig, explain
    config = RCANConfig.official(2) if model == "official" else RCANConfig.compact(2)
    return 2 * sum(r["macs"] for r in explain.stages(config, size, size)) / 1e9


def measure(impl, model, size, repeats, xla_flags=None, layout=None) -> dict:
    env = dict(os.environ)
    if layout:
        env["RCAN_BENCH_LAYOUT"] = layout
    if xla_flags:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + xla_flags).strip()
    r = subprocess.run([sys.executable, "-m", "accel.bench", "--case", impl, model, str(size), str(repeats)],
                       capture_output=True, text=True, env=env)
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
with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
open(out, "w").write(str(hwm * 1024))
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
        peak = int(peak_file.read_text()) if peak_file.is_file() else 0
    return {"input": [w, h], "output": out, "weights": weights or "shipped compact", "options": extra,
            "seconds": round(seconds, 1), "peak_rss_gb": round(peak / 1e9, 3), "returncode": r.returncode,
            "stderr": r.stderr.strip()[-300:]}


def bench_conv(channels: int, size: int) -> dict:
    """The measurement accel/autotune.py makes, for every path: ms and GFLOP/s of one conv."""
    import jax.numpy as jnp

    from accel import autotune
    flop = 2 * size * size * 9 * channels * channels
    out = {"channels": channels, "size": size}
    times = autotune.time_paths(list(autotune.OPTIONS), 1, size, size, channels, jnp.float32)
    for name, t in times.items():
        per_conv = t / 6   # the chain has 6
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


def measure_group(impls, model: str, size: int, args) -> list[dict]:
    """Every implementation on one (model, size), in `args.rounds` interleaved rounds (order reversed
    every other round, so a drift of the machine's clock or load hits all alike). Per implementation:
    the median over all rounds' timed runs, and the median of the rounds' peak memories."""
    from accel import runtime
    for impl in impls:
        if impl.startswith("accel") and runtime.cache_dir() is not None:
            # Compile once into the persistent cache first: the rounds then measure what every run of a
            # known shape costs (the cold compile has its own measurement: --compile).
            measure(impl, model, size, 0, args.xla_flags, args.layout)
    runs: dict[str, list[dict]] = {impl: [] for impl in impls}
    for k in range(args.rounds):
        for impl in (impls if k % 2 == 0 else impls[::-1]):
            runs[impl].append(measure(impl, model, size, args.repeats,
                                      args.xla_flags if impl.startswith("accel") else None, args.layout))
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m accel.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["official", "compact"], choices=["official", "compact"],
                    help="which RCAN sizes")
    ap.add_argument("--sizes", nargs="+", type=int, default=[64, 128, 256], help="square LR input sizes")
    ap.add_argument("--impls", nargs="+", default=None, choices=IMPLS,
                    help="implementations (default: reference, accel, torch if installed, accel-bf16 on accelerators)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up (median reported)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds of all implementations, each in "
                                                          "fresh processes (medians over all rounds)")
    ap.add_argument("--xla-flags", help="extra XLA_FLAGS for the accel cases")
    ap.add_argument("--layout", choices=["scan", "mixed", "unrolled"], help="accel block layout (default: accel's)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--upscale", metavar="WxH", help="instead: time python -m accel.upscale on a WxH image and "
                                                     "report its peak memory (e.g. 2000x1500)")
    ap.add_argument("--weights", help="with --upscale: weights to pass (default: the shipped model)")
    ap.add_argument("--upscale-args", default="", help="with --upscale: extra upscale options, e.g. '--tile 256'")
    ap.add_argument("--compile", action="store_true", help="instead: accel's cold and cached compile times")
    ap.add_argument("--conv", type=int, metavar="CHANNELS", help="instead: one 3×3 conv (CHANNELS → CHANNELS) at "
                                                                  "each size, by each CPU convolution path")
    ap.add_argument("--table", metavar="JSON", help="instead: print the table of a saved --json result")
    ap.add_argument("--case", nargs=4, metavar=("IMPL", "MODEL", "SIZE", "REPEATS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        impl, model, size, repeats = args.case
        print(json.dumps(run_case(impl, model, int(size), int(repeats))))
        return 0
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return 0
    if args.compile:
        print(json.dumps([bench_compile(m, s) for m in args.models for s in args.sizes], indent=2))
        return 0
    if args.conv:
        print(json.dumps([bench_conv(args.conv, s) for s in args.sizes], indent=2))
        return 0
    if args.upscale:
        print(json.dumps(bench_upscale(args.upscale, args.weights, args.upscale_args.split()), indent=2))
        return 0
    impls = args.impls
    if impls is None:
        import importlib.util
        impls = ["reference", "accel"]
        import jax
        if jax.devices()[0].platform != "cpu":
            impls.append("accel-bf16")
        if importlib.util.find_spec("torch"):
            impls.append("torch")
    peak = peak_gflops()
    rows = []
    for model in args.models:
        for size in args.sizes:
            group = measure_group(impls, model, size, args)
            for r in group:
                r["gflop"] = gflop(model, size)
                if "median_s" in r:
                    r["gflops"] = r["gflop"] / r["median_s"]
                    r["share_of_peak"] = r["gflops"] / peak if peak and r["device"] == "cpu" else None
            torch_t = next((r.get("median_s") for r in group if r["impl"] == "torch"), None)
            torch_mb = next((r.get("peak_extra_mb") for r in group if r["impl"] == "torch"), None)
            for r in group:
                r["ratio_to_torch"] = r["median_s"] / torch_t if torch_t and "median_s" in r else None
                r["memory_to_torch"] = (r["peak_extra_mb"] / torch_mb if torch_mb and "peak_extra_mb" in r
                                        else None)
            rows += group
    data = {"peak_gflops": peak, "xla_flags": args.xla_flags, "rows": rows}
    print(json.dumps(data, indent=2) if args.json else table(data))
    return 0


def table(data: dict) -> str:
    peak, rows = data["peak_gflops"], data["rows"]
    lines = [f"machine peak ≈ {peak:.0f} GFLOP/s (fp32)" if peak else "machine peak unknown",
             f"{'impl':<11} {'model':<9} {'size':>5} {'device':<6} {'median s':>9} {'GFLOP/s':>8} {'% peak':>7} "
             f"{'/ torch':>8} {'peak MB':>8} {'/ torch':>8} {'1st call s':>10} {'1st MB':>7}"]
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
                     f"{r['first_call_s']:>10.2f} {first_mb:>7}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
