"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): Winograd F(6×6, 3×3) (64 multiplications per 36 outputs, 21 % fewer
than F(4×4)) against the F(4×4) of accel/conv/winograd.py, in the autotune's conv chain, with and without
YNNPACK's dot fusions; and the float32 error of one conv of each against XLA's at full precision.

F(6×6) comes from Cook-Toom on the points 0, ±1, ±2, ±1/2 and ∞ (runs/experiments/winograd_f3_bf16.py).
Run: python runs/experiments/winograd_f6.py SIZE DTYPE   e.g. 256 float32
"""
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from winograd_f3_bf16 import cook_toom  # beside this file

from accel.conv import autotune, registry, winograd

YNN = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}


def main(size: int, dtype):
    at6, g6, bt6 = cook_toom([0, 1, -1, 2, -2, 0.5, -0.5], m=6)
    winograd.SCHEMES["f6"] = (bt6, g6, at6)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((1, size, size, 64)), dtype)
    w = jnp.asarray(rng.standard_normal((3, 3, 64, 64)) * 0.05, dtype)
    b = jnp.zeros((64,), dtype)
    exact = jax.lax.conv_general_dilated(x.astype(jnp.float32), w.astype(jnp.float32), (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest")
    for scheme in ("f4", "f6"):
        y = winograd.conv3x3(x.astype(jnp.float32), w.astype(jnp.float32), scheme=scheme)
        print(f"{scheme}: RMS error of one float32 conv, relative: "
              f"{float(jnp.sqrt(jnp.mean((y - exact) ** 2) / jnp.mean(exact ** 2))):.1e}")
    rounds = 3 if size <= 128 else 1
    fs = {}
    for name, scheme, options in (("F(4x4) + ynn", "f4", YNN), ("F(6x6) + ynn", "f6", YNN),
                                  ("F(4x4)", "f4", {}), ("F(6x6)", "f6", {})):
        def traced(x, w, b, scheme=scheme):
            with registry.enabled(registry.ConvPath(scheme, scheme)):
                return autotune._chain(x, w, b, rounds=rounds)
        fs[name] = jax.jit(traced, compiler_options=options or None)
        jax.block_until_ready(fs[name](x, w, b))
    times = {name: [] for name in fs}
    for _ in range(5):
        for name, f in fs.items():
            t = time.perf_counter()
            jax.block_until_ready(f(x, w, b))
            times[name].append((time.perf_counter() - t) / (2 * rounds))
    for name, t in times.items():
        print(f"{size} {jnp.dtype(dtype).name:8s} {name:13s} best {min(t) * 1e3:6.2f} ms/conv, "
              f"median {sorted(t)[2] * 1e3:6.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]), jnp.dtype(sys.argv[2]))
