"""Timing helper of the later experiments: every variant compiled, then run in turns (so a slow moment of
the shared machine hits all alike); min / median in ms, divided by `per` (e.g. the convs in a chain)."""
import statistics
import time

import jax


def compare(fs: dict, args, rounds: int = 8, per: float = 1.0) -> dict:
    for f in fs.values():
        jax.block_until_ready(f(*args))
    ts = {k: [] for k in fs}
    for _ in range(rounds):
        for k, f in fs.items():
            t = time.perf_counter()
            jax.block_until_ready(f(*args))
            ts[k].append(time.perf_counter() - t)
    return {k: "%.2f/%.2f" % (min(v) / per * 1e3, statistics.median(v) / per * 1e3) for k, v in ts.items()}
