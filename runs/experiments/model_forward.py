"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): one model's float32 forward at one size on one convolution path,
best of 4 after a warm-up, in this process. To compare two versions of the code, run it from two checkouts
in turns (e.g. `git worktree add /tmp/before REV`), so the machine's slow stretches hit both.

Run: python runs/experiments/model_forward.py SIZE PRESET [CONV [WIDTH]]   e.g. 256 official winograd-ynn
     (an input SIZE × SIZE, or SIZE rows × WIDTH columns)
"""
import sys
import time

import jax.numpy as jnp
import numpy as np

import accel
from reference import init_weights
from reference.config import PRESETS


def main(size: int, preset: str, conv: str = "winograd-ynn", width: int | None = None):
    config = PRESETS[preset](2)
    x = np.random.default_rng(0).uniform(0, 255, (1, size, width or size, 3)).astype(np.float32)
    model = accel.model_from_weights(init_weights(config, 0), config, "scan", jnp.float32, conv=conv)
    accel.forward(model, x).block_until_ready()
    times = []
    for _ in range(4):
        t = time.perf_counter()
        accel.forward(model, x).block_until_ready()
        times.append(time.perf_counter() - t)
    runs = [round(t, 3) for t in times]
    print(f"{size}×{width or size} {preset} {conv} ({accel.__file__}): best {min(times):.3f} s {runs}")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], *sys.argv[3:4], *map(int, sys.argv[4:5]))
