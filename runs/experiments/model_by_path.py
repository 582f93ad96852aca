"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): the official ×2 model (random weights) in bfloat16 (or float32) with
each named convolution path fixed, one process, the paths taking turns: best of 3 forwards after a warm-up;
at 64×64 also the largest and mean absolute difference from the float32 model's output through XLA's own
convolution (0..255 scale).

Run: python runs/experiments/model_by_path.py [--float32] SIZE PATH [PATH ...]
e.g. 128 kernel-winograd2 winograd-ynn, or --float32 128 kernel-winograd4 winograd-ynn
"""
import sys
import time

import jax.numpy as jnp
import numpy as np

import accel
from reference import RCANConfig, init_weights


def main(size: int, paths: list[str], dtype=jnp.bfloat16):
    config = RCANConfig.official(2)
    weights = init_weights(config, 0)
    x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    models = {p: accel.model_from_weights(weights, config, "scan", dtype, conv=p) for p in paths}
    outs = {p: np.asarray(accel.forward(m, x)) for p, m in models.items()}
    ref = None
    if size <= 64:
        ref = np.asarray(accel.forward(accel.model_from_weights(weights, config, "scan", jnp.float32,
                                                                conv="xla"), x))
    times = {p: [] for p in models}
    for _ in range(3):
        for p, m in models.items():
            t = time.perf_counter()
            accel.forward(m, x).block_until_ready()
            times[p].append(time.perf_counter() - t)
    for p in models:
        diff = None if ref is None else np.abs(outs[p] - ref)
        err = "" if diff is None else f"  vs float32: max {diff.max():.3f} mean {diff.mean():.4f}"
        print(f"{size} {p:17s} best {min(times[p]):.3f} s {[round(t, 3) for t in times[p]]}{err}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--float32"]
    main(int(args[0]), args[1:], jnp.float32 if "--float32" in sys.argv else jnp.bfloat16)
