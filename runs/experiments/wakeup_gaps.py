"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): why a float32 forward sometimes takes 2–3× its usual time on the
project's 2-core VMs (whole processes or runs of calls; seen in older code as well). One process runs the
official ×2 model at 64×64 N times under a jax.profiler trace, then prints each call's idle gaps: moments
between two XLA ops when no op runs on any XLA worker thread. Slow calls have ~1,450 gaps over 50 µs
(~130 µs each) where fast ones have under 15: the workers wake late from sleep; the ops themselves also
last longer (their second thread joins late). torch's OpenMP workers spin between regions and do not
show it.

Run: python runs/experiments/wakeup_gaps.py [CONV] [N]   (default winograd-ynn 6; repeat until a slow call)
"""
import collections
import sys

import jax.numpy as jnp
import numpy as np

import accel
import tracing   # beside this file
from reference import RCANConfig, init_weights


def main(conv: str, n: int):
    config = RCANConfig.official(2)
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    model = accel.model_from_weights(init_weights(config, 0), config, "scan", jnp.float32, conv=conv)
    accel.forward(model, x).block_until_ready()
    times, events = tracing.trace(lambda: accel.forward(model, x).block_until_ready(), n)
    print("forwards, s:", [round(t, 2) for t in times])
    threads = tracing.names(events, "thread_name")
    ops = [e for e in events if e.get("ph") == "X" and "XLAEigen" in threads.get((e["pid"], e["tid"]), "")
           and not e["name"].startswith(("Thunk", "end:", "Threadpool"))]
    kinds = collections.Counter()
    for e in ops:
        kinds[e["name"].split(".")[0]] += e["dur"]
    print("op time, s:", {k: round(v / 1e6, 2) for k, v in kinds.most_common(4)})
    # Calls are split where nothing ran for 5 ms; within a call, every stretch with no op running is a gap.
    gaps, end = [[]], None
    for start, stop in sorted((e["ts"], e["ts"] + e["dur"]) for e in ops):
        if end is not None and start - end > 5000:
            gaps.append([])
        elif end is not None and start > end:
            gaps[-1].append(start - end)
        end = stop if end is None else max(end, stop)
    for g in gaps:
        long = [d for d in g if d > 50]
        print(f"  gaps {len(g):5d}, {sum(g) / 1e3:4.0f} ms; over 50 µs: {len(long):5d}, {sum(long) / 1e3:4.0f} ms")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "winograd-ynn", int(sys.argv[2]) if len(sys.argv) > 2 else 6)
