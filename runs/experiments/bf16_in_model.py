"""Experiment for accel/PERFORMANCE.md: the official ×2 model in bfloat16 at 128×128 on the CPU with each
bfloat16 convolution path fixed (median of 3 after a warm-up, one process).

Run: python runs/experiments/bf16_in_model.py
"""
import time

import jax.numpy as jnp
import numpy as np

import accel
from reference import RCANConfig, init_weights

config = RCANConfig.official(2)
weights = init_weights(config, 0)
x = np.random.default_rng(0).uniform(0, 255, (1, 128, 128, 3)).astype(np.float32)
for conv in ("ynn", "xla", "winograd2"):
    model = accel.model_from_weights(weights, config, "scan", jnp.bfloat16, conv=conv)
    accel.forward(model, x).block_until_ready()
    times = []
    for _ in range(3):
        t = time.perf_counter()
        accel.forward(model, x).block_until_ready()
        times.append(time.perf_counter() - t)
    print(f"{conv:10s} {np.median(times):.3f} s")
