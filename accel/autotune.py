"""Per-shape choice of the CPU convolution path, measured like cuDNN's benchmark mode.

XLA:CPU can run RCAN's 3×3 convolutions two ways: its own convolution (Eigen) or, with the YNNPACK
dot fusions switched on for that compilation, through YNNPACK. Neither wins everywhere on the
project's 2-core CPU (accel/PERFORMANCE.md, one 64→64 conv): Eigen 206 GFLOP/s at 128×128 but
107 at 64×64 and 153 at 192×192; YNNPACK 162–187 at every size. So the first forward of a shape
times a short chain of the model's own convolutions both ways and keeps the faster. Decisions are
kept per process and on disk beside the compilation cache, keyed by the machine.

The two paths sum in different orders (outputs differ by ~1e-6 relative). The decision is keyed by
the per-sample shape (H, W, channels, dtype), not the batch, so a batch split over several devices
takes the same path as on one device and gives the same numbers.

RCAN_CONV=auto (default) | xla | ynn fixes the path instead.
"""
from __future__ import annotations

import functools
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from reference.weights import atomic_write

from . import runtime

OPTIONS = {
    "xla": {},
    "ynn": {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"},
}
_decided: dict[str, str] = {}


def _setting() -> str:
    value = os.environ.get("RCAN_CONV", "auto").lower()
    if value != "auto" and value not in OPTIONS:
        raise ValueError(f"RCAN_CONV must be auto, {' or '.join(OPTIONS)}, got {value!r}")
    return value


@functools.cache   # read once: choose() runs on every forward call
def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "")
    return f"{platform.machine()}|{cpu}|{len(os.sched_getaffinity(0))} cores|jax {jax.__version__}"


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read().splitlines()
    except OSError:
        return []


def _store() -> str | None:
    folder = runtime.cache_dir()
    return None if folder is None else os.path.join(folder, "conv_choices.json")


def _load() -> dict:
    path = _store()
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (TypeError, OSError, ValueError):
        return {}   # no cache folder, no file yet, or a damaged file: measure again


def _save(key: str, choice: str) -> None:
    path = _store()
    if path is None:
        return
    data = _load()
    data[key] = choice

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, write)
    except OSError:
        pass  # a read-only cache folder only costs re-measuring in the next process


def _chain(x, w, b):
    for _ in range(2):   # two convs, as in an RCAB, so the measurement includes the hand-over between them
        x = jax.nn.relu(lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
                        + b)
    return x


def time_option(name: str, batch: int, height: int, width: int, channels: int, dtype) -> float:
    """Best of at least three runs of two 3×3 convs (channels → channels) compiled with one option set."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, height, width, channels)), dtype)
    w = jnp.asarray(rng.standard_normal((3, 3, channels, channels)) * 0.05, dtype)
    b = jnp.zeros((channels,), dtype)
    f = jax.jit(_chain, compiler_options=OPTIONS[name] or None)
    f(x, w, b).block_until_ready()
    best, spent, runs = float("inf"), 0.0, 0
    while runs < 3 or (spent < 0.05 and runs < 20):   # small shapes: more runs, the minimum is steadier
        t = time.perf_counter()
        f(x, w, b).block_until_ready()
        took = time.perf_counter() - t
        best, spent, runs = min(best, took), spent + took, runs + 1
    return best


def choose(batch: int, height: int, width: int, channels: int, dtype) -> str:
    """The convolution path for this per-device batch shape: 'xla' or 'ynn'."""
    setting = _setting()
    if setting != "auto":
        return setting
    if jax.default_backend() != "cpu":
        return "xla"   # the options are XLA:CPU's; GPUs and TPUs have one path here
    key = f"{_machine()}|{height}x{width}x{channels}|{jnp.dtype(dtype).name}"
    if key not in _decided:
        choice = _load().get(key)
        if choice not in OPTIONS:
            times = {name: time_option(name, batch, height, width, channels, dtype) for name in OPTIONS}
            choice = min(times, key=times.get)
            _save(key, choice)
        _decided[key] = choice
    return _decided[key]
