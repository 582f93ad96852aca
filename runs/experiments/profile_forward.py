"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): where the official ×2 model's CPU forward spends its time, from a
jax.profiler trace of one forward (after two warm-up calls): the time per XLA fusion kind (summed over
its runs, as ms per forward) and how long one, two or no XLA threads were busy.

Run: python runs/experiments/profile_forward.py SIZE DTYPE CONV [PRESET]   e.g. 128 bfloat16 winograd2 compact
(PRESET: official (default), deep or compact)
"""
import collections
import sys

import jax.numpy as jnp
import numpy as np

import accel
import tracing   # beside this file
from reference import RCANConfig, init_weights


def main(size: int, dtype, conv: str, preset: str = "official"):
    config = getattr(RCANConfig, preset)(2)
    model = accel.model_from_weights(init_weights(config, 0), config, "scan", dtype, conv=conv)
    x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    for _ in range(2):
        accel.forward(model, x).block_until_ready()
    (wall,), events = tracing.trace(lambda: accel.forward(model, x).block_until_ready())
    threads = tracing.names(events, "thread_name")
    ops = [e for e in events if e.get("ph") == "X" and "XLAEigen" in threads.get((e["pid"], e["tid"]), "")
           and not e["name"].startswith("Thunk")]
    kinds = collections.Counter()
    for e in ops:
        kinds[e["name"].split(".")[0]] += e["dur"]
    # Sweep the op intervals: time with 0, 1, 2, … ops running at once.
    edges = sorted([(e["ts"], 1) for e in ops] + [(e["ts"] + e["dur"], -1) for e in ops])
    busy, running, last = collections.Counter(), 0, edges[0][0]
    for ts, step in edges:
        busy[running] += ts - last
        running, last = running + step, ts
    print(f"{preset} {size}×{size} {jnp.dtype(dtype).name} conv={conv}: forward {wall:.3f} s (traced)")
    for kind, us in kinds.most_common(8):
        print(f"  {kind:32s} {us / 1e3:8.1f} ms")
    print("  ops running at once: " + ", ".join(f"{n}: {us / 1e3:.0f} ms" for n, us in sorted(busy.items())))


if __name__ == "__main__":
    main(int(sys.argv[1]), jnp.dtype(sys.argv[2]), sys.argv[3], *sys.argv[4:5])
