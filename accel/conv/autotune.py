"""Per-size-class choice of the convolution path, measured like cuDNN's benchmark mode.

The paths are accel/conv/registry.py's records: XLA's own convolution (with or without YNNPACK, and in NCHW on
a GPU), Winograd F(4×4) and F(2×2) written in XLA (accel/conv/winograd.py), and the project's C++ kernels
(accel/conv/cpu_kernel.py). None wins everywhere: which is fastest depends on the CPU (its vector and bfloat16
instructions, whether it has AMX), the channels, the image size and the dtype (one CPU's ranking:
`python -m accel.bench --conv-channels 64 --sizes 64 128 256`; the models': accel/PERFORMANCE.md). So the
first forward of a size class times a short chain of the model's own convolutions every way, interleaved,
and keeps the fastest; where the chain's two fastest are within RECHECK_MARGIN, the caller's model runs
both ways and decides (the chain's margins are smaller than the model's, and noise can flip them).
Decisions are kept per process and, once runtime.configure() names a cache folder, on disk beside the
compilation cache, keyed by the machine (CPU model, cores, the flags that matter: AVX-512, bfloat16 dot
units, AMX) and the jax version. A decision is written to disk only when its timing was steady (the
spread of the winner's runs under SPREAD_LIMIT) and the machine was quiet (other processes, and the host
as steal time, took under BUSY_LIMIT of the CPU time of the cores this process runs on while the paths
were timed: a neighbour busy all along slows every run alike, so the spread alone misses it, and the
decision it skews would be kept for good). One made otherwise holds for this process only, and a stored
one without both readings in bounds (or a close call without the model's times) is measured again.

The paths sum in different orders (outputs differ by ~1e-6 relative; Winograd ~4e-6). The decision is
keyed by the per-sample size class (√(H·W) to the nearest power of two: size_class), channels and dtype, not
the batch, so a batch split over several devices takes the same path as on one device and gives the same
numbers, and an image of a new size but a known class reuses the decision: it pays only its compile.

On a GPU the same measurement chooses between XLA's convolution ("xla", cuDNN in the layout XLA picks),
the same forced to NCHW ("xla-nchw") and Winograd F(4×4, 3×3) as GEMMs ("winograd", whose GEMMs need no
cuDNN workspace: at small inputs it can be as fast with a fraction of the device memory). There every path within
DEVICE_RECHECK_MARGIN of the chain's fastest runs in the model, and device memory weighs in: of the paths
within MEMORY_MARGIN of the fastest, the one whose compiled forward has the fewest temporaries is taken.
Decisions there are keyed by the GPU too.

The model's `conv` setting (load_model(conv=...), the CLIs' --conv, default RCAN_CONV or auto) is auto or a
path of registry.PATHS, which fixes it.
"""
from __future__ import annotations

import functools
import json
import math
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from accel.platform import hardware, runtime
from reference.support.files import atomic_write

from . import cpu_kernel, registry
from .registry import PATHS

_decided: dict[str, str] = {}


SETTINGS = ("auto", *PATHS)
SPREAD_LIMIT = 0.15   # (median - best) / best of the winner's timed runs, above which nothing is persisted
BUSY_LIMIT = 0.10     # share of our cores' CPU time others took while timing, above which nothing is persisted
ATTEMPTS = 3          # measurements of a shape before an unsteady decision is kept for this process only
# The chain's runner-up within this of its winner: the two are timed again in the model itself. The chain's
# ranking can flip between runs where the model's margin is wide (`python runs/experiments/autotune_vs_model.py
# SIZE DTYPE` compares the two).
RECHECK_MARGIN = 0.25
# Off a CPU a model forward costs milliseconds, and a path a little behind in the chain may be worth its memory:
# every path the chain timed within this of its fastest runs in the model.
DEVICE_RECHECK_MARGIN = 1.0
# On a device with memory of its own (a GPU): of the paths the model ran within this of the fastest, the one whose
# compiled forward needs the least device memory is taken: at small inputs Winograd's GEMMs can match cuDNN's
# convolutions without their workspaces (accel/PERFORMANCE.md, "GPU"; `bash runs/gpu/measure.sh f32_auto`).
# The chain's own temporaries do not show the model's: the model's are compared.
MEMORY_MARGIN = 0.35


def env_setting() -> str:
    """The CLIs' default convolution setting: $RCAN_CONV, else auto."""
    return os.environ.get("RCAN_CONV", "auto")


def check_setting(value: str, dtype=None) -> str:
    """value, if it names a setting; with dtype, also one this dtype and the default backend can run
    (a usage error the CLIs report in one line before anything runs)."""
    if value not in SETTINGS:
        raise ValueError(f"conv must be one of {', '.join(SETTINGS)}; got {value!r}")
    if dtype is None or value == "auto":
        return value
    backend = jax.default_backend()
    if not registry.runs_on(value, backend):
        where = " or ".join(b.upper() for b in PATHS[value].backends)
        raise ValueError(f"conv {value} runs on a {where} only: on a {backend} "
                         f"use one of {', '.join(('auto', *paths(dtype)))}")
    kernel = PATHS[value].kernel
    if kernel is not None and cpu_kernel.serves(kernel, dtype) and not cpu_kernel.available(kernel):
        raise ValueError(f"conv {value} cannot run here: {cpu_kernel.unavailable(kernel)}; "
                         "use auto")
    if value not in paths(dtype):
        raise ValueError(f"conv {value} is not offered for {jnp.dtype(dtype).name}: "
                         f"use one of {', '.join(paths(dtype))}")
    return value


@functools.cache   # read once: choose() runs on every forward call
def _machine() -> str:
    flags = ",".join(f for f in hardware.NOTABLE_FLAGS if f in hardware.cpu_flags())
    device = "" if jax.default_backend() == "cpu" else f"|{jax.devices()[0].device_kind}"
    return (f"{platform.machine()}|{hardware.cpu_name()}|{hardware.cores()} cores|{flags}{device}"
            f"|jax {jax.__version__}")


def _store() -> str | None:
    folder = runtime.cache_dir()
    return None if folder is None else os.path.join(folder, "conv_choices.json")


STORE_LIMIT = 4_000_000   # bytes: the store of every shape a machine has met is a few kB; more is not ours
_warned: set = set()


def _warn(path: str, why: str) -> None:
    if path not in _warned:   # one line per process, not one per forward call
        _warned.add(path)
        print(f"warning: {path}: {why}; ignored, the paths are timed again", file=sys.stderr)


def _load() -> dict:
    """The stored decisions, or {} when there is no store or it is not one (each record is checked again
    before use, by _trusted)."""
    path = _store()
    if path is None:
        return {}
    try:
        if os.path.getsize(path) > STORE_LIMIT:
            _warn(path, f"larger than {STORE_LIMIT // 10**6} MB")
            return {}
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as e:   # unreadable, not JSON, or nested beyond parsing
        _warn(path, f"not a readable decision store ({type(e).__name__})")
        return {}
    if not isinstance(data, dict):
        _warn(path, "not a decision store (not a JSON object)")
        return {}
    return data


def _save(key: str, record: dict) -> None:
    path = _store()
    if path is None:
        return
    data = _load()
    data[key] = record

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, write)
    except OSError:
        pass  # a read-only cache folder only costs re-measuring in the next process


def _chain(x, w, b, rounds: int = 3):
    """Rounds of two convs, as in the model's scanned RCABs: the hand-over between convs and the reuse
    of buffers inside one call count as they do there (a lone call also pays for fresh pages, which
    would wrongly count against Winograd's larger intermediates on small images)."""
    def conv(x):
        if registry.applies(w.shape):
            return registry.square_conv(x, w, b)
        return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b

    def rcab(x, _):
        for _ in range(2):
            x = jax.nn.relu(conv(x))
        return x, None
    return lax.scan(rcab, x, None, length=rounds)[0]


def jit(fun, path: str, **kwargs):
    """fun jit-compiled for one convolution path (its compiler options; Winograd traced in where asked)."""
    def traced(*args):
        with registry.enabled(path):
            return fun(*args)
    return jax.jit(traced, compiler_options=PATHS[path].options or None, **kwargs)


def paths(dtype, channels: int | None = None) -> list[str]:
    """The paths worth timing for this dtype here (registry.offered): F(2×2) (bfloat16 GEMMs) for bfloat16
    only; a C++ kernel for the dtypes it serves on a CPU that runs its build, and, given the channels, only
    where its register tiles fit them."""
    backend = jax.default_backend()
    return [p for p in PATHS if registry.offered(p, dtype, backend, channels)]


def time_paths(names, batch: int, height: int, width: int, channels: int, dtype) -> dict[str, list[float]]:
    """Per path, the times of several runs of six 3×3 convs (channels → channels; two on large inputs),
    as seconds per six convs; the paths take turns, so a slow moment of a shared machine hits all of
    them rather than one."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, height, width, channels)), dtype)
    w = jnp.asarray(rng.standard_normal((3, 3, channels, channels)) * 0.05, dtype)
    b = jnp.zeros((channels,), dtype)
    # Large inputs: one round of two convs (their strips keep Winograd's fresh pages small next to the
    # work), so that timing four paths on an upscale's tiles takes seconds, not tens of seconds.
    rounds = 3 if batch * height * width <= 256 * 256 else 1
    fs = {name: jit(functools.partial(_chain, rounds=rounds), name) for name in names}
    for f in fs.values():
        f(x, w, b).block_until_ready()   # compile
    times: dict[str, list[float]] = {name: [] for name in fs}
    spent, runs = 0.0, 0
    # Up to a second of rounds, so a burst of a neighbour's load cannot decide (the decision is kept on
    # disk); large shapes: two rounds (each path already ran once to compile).
    while runs < 2 or (spent < 1.0 and runs < 20):
        for name, f in fs.items():
            t = time.perf_counter()
            f(x, w, b).block_until_ready()
            took = time.perf_counter() - t
            times[name].append(took * 3 / rounds)
            spent += took
        runs += 1
    return times


def spread(times: list[float]) -> float:
    """How unsteady a path's runs were: (median - best) / best."""
    return (statistics.median(times) - min(times)) / min(times)


def _number(value) -> bool:
    """A finite, non-negative JSON number (not a string, bool, null or an integer beyond float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value)) and value >= 0
    except OverflowError:
        return False


def _numbers(table) -> bool:
    return isinstance(table, dict) and all(isinstance(k, str) and _number(v) for k, v in table.items())


def _within(record: dict, field: str, limit: float) -> bool:
    return _number(record.get(field)) and record[field] <= limit


def _close(seconds: dict, device: bool = False) -> list[str]:
    """The chain's two fastest paths within RECHECK_MARGIN of the fastest (off a CPU: all its paths within
    DEVICE_RECHECK_MARGIN), if two or more are, else []."""
    margin = DEVICE_RECHECK_MARGIN if device else RECHECK_MARGIN
    near = [name for name in sorted(seconds, key=seconds.get) if seconds[name] <= min(seconds.values())
            * (1 + margin)]
    return (near if device else near[:2]) if len(near) >= 2 else []


def _trusted(record, dtype, channels: int) -> bool:
    """A stored decision among exactly the paths offered now (one made before a path was added never
    saw it), made with a steady timing on a quiet machine (older entries recorded neither), and by the
    model's own times of every path the chain put close, by today's margins (older entries went by the chain,
    or ran fewer paths in the model), and off a CPU with the paths' device memory (older entries went by time
    alone)."""
    offered, device = paths(dtype, channels), jax.default_backend() != "cpu"
    if not (isinstance(record, dict) and isinstance(record.get("choice"), str) and record["choice"] in offered
            and _numbers(record.get("seconds")) and set(record["seconds"]) == set(offered)):
        return False
    if not all(_numbers(record[k]) for k in ("model_seconds", "temp_mb") if record.get(k) is not None):
        return False
    close = _close(record["seconds"], device)
    return (_within(record, "spread", SPREAD_LIMIT) and _within(record, "busy", BUSY_LIMIT)
            and (not close or set(record.get("model_seconds") or ()) == set(close))
            and (not device or isinstance(record.get("temp_mb"), dict)))


def size_class(height: int, width: int) -> int:
    """The size class a decision holds for: log2 of the per-sample side √(H·W), rounded (classes …, 128,
    256, 512, … with bounds at 181, 362, 724, …). The fastest path changes with the size only across such
    steps (cache sizes), while timing the paths at every new size cost seconds for each image of a size
    not seen before; now a new size in a known class costs only its compile."""
    return max(0, round(math.log2(max(1, height * width)) / 2))


def _key(height: int, width: int, channels: int, dtype) -> str:
    # The candidates are part of the key, and the kernels' code where one is a candidate: a decision made
    # before a path existed, or with an older kernel, is measured again.
    offered = paths(dtype, channels)
    kernels = f"|kernels {cpu_kernel.sources_digest()}" if any(p in registry.KERNEL_PATHS for p in offered) else ""
    return (f"{_machine()}|side 2^{size_class(height, width)}x{channels}|{jnp.dtype(dtype).name}"
            f"|{','.join(offered)}{kernels}")


def decided(height: int, width: int, channels: int, dtype) -> bool:
    """Whether this shape's path is already known (this process, or a steady decision on disk)."""
    key = _key(height, width, channels, dtype)
    return key in _decided or _trusted(_load().get(key), dtype, channels)


def choose(batch: int, height: int, width: int, channels: int, dtype, setting: str = "auto",
           recheck=None, memory=None) -> str:
    """The convolution path for this per-device batch shape (a key of registry.PATHS); setting as check_setting.

    recheck (optional): names -> {name: [seconds of the caller's model forward]}; when the chain's top two
    within RECHECK_MARGIN of the fastest (off a CPU: all its paths within DEVICE_RECHECK_MARGIN) are two or
    more, they are timed that way and the model's times decide. memory (optional; used off a CPU): names ->
    {name: bytes of temporaries of the caller's compiled model}; of the paths within MEMORY_MARGIN of the
    fastest, the leanest is taken.
    Off a CPU a decision is kept on disk only where memory was given."""
    if check_setting(setting, dtype) != "auto":
        return setting
    device = jax.default_backend() != "cpu"
    key = _key(height, width, channels, dtype)
    if key not in _decided:
        record = _load().get(key)
        if _trusted(record, dtype, channels):
            choice = record["choice"]
        else:
            # Until the winner's runs agree and nobody else was busy (a busy moment passes), a few times at most.
            for _ in range(ATTEMPTS):
                with hardware.OtherLoad() as load:
                    times = time_paths(paths(dtype, channels), batch, height, width, channels, dtype)
                    best = {name: min(t) for name, t in times.items()}
                    close = _close(best, device)
                    model = recheck(close) if close and recheck is not None else None
                deciding = model or times
                choice = min(deciding, key=lambda name: min(deciding[name]))
                # Where others' load cannot be read (no /proc/stat), the spread decides alone.
                reading = {"spread": round(spread(deciding[choice]), 4), "busy": round(load.share or 0.0, 4)}
                if device and memory is not None:   # device memory is scarce: a near-equal, leaner path wins
                    took = {name: min(t) for name, t in deciding.items()}
                    lean = memory([name for name in took if took[name] <= took[choice] * (1 + MEMORY_MARGIN)])
                    choice = min(lean, key=lambda name: (lean[name], took[name]))   # ties: the faster
                    reading["temp_mb"] = {name: round(m / 1e6, 2) for name, m in lean.items()}
                if model:
                    reading["model_seconds"] = {name: round(min(t), 6) for name, t in model.items()}
                if reading["spread"] <= SPREAD_LIMIT and reading["busy"] <= BUSY_LIMIT:
                    # A close call the model did not settle, or a device's without the model's memory:
                    # this process only.
                    if (model or not close) and (not device or "temp_mb" in reading):
                        _save(key, {"choice": choice, **reading,
                                    "seconds": {name: round(t, 6) for name, t in best.items()}})
                    break
                # else: for this process only, measured again next time
        _decided[key] = choice
    return _decided[key]
