"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): does the autotune's short chain of convolutions rank the paths as
the full model does? For one input size and dtype: the chain's time per convolution for every path
(autotune.time_paths, as the autotune measures it) beside the official ×2 model's forward with that
path fixed (best of N after a warm-up; random weights), fastest chain first.

Run: python runs/experiments/autotune_vs_model.py SIZE DTYPE [N]   e.g. 128 bfloat16
"""
import sys
import time

import jax.numpy as jnp
import numpy as np

import accel
from accel.conv import autotune
from reference import RCANConfig, init_weights


def main(size: int, dtype, repeats: int = 2):
    config = RCANConfig.official(2)
    weights = init_weights(config, 0)
    chain = {k: min(v) / 6 for k, v in autotune.time_paths(autotune.paths(dtype), 1, size, size, 64, dtype).items()}
    x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    for conv in sorted(chain, key=chain.get):
        model = accel.model_from_weights(weights, config, "scan", dtype, conv=conv)
        accel.forward(model, x).block_until_ready()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            accel.forward(model, x).block_until_ready()
            times.append(time.perf_counter() - t)
        print(f"{size} {jnp.dtype(dtype).name:8s} {conv:13s} chain {1e3 * chain[conv]:6.2f} ms/conv   "
              f"model {min(times):6.3f} s", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), jnp.dtype(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 2)
