"""Helper of the profiling experiments: calls traced with jax.profiler, and the trace's events read back."""
import glob
import gzip
import json
import tempfile
import time


def trace(call, n: int = 1) -> tuple[list[float], list[dict]]:
    """Runs call() n times under one jax.profiler trace: (each call's wall time in s, the trace's events)."""
    import jax
    folder = tempfile.mkdtemp()
    jax.profiler.start_trace(folder)
    walls = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        walls.append(time.perf_counter() - t)
    jax.profiler.stop_trace()
    events = json.load(gzip.open(glob.glob(f"{folder}/**/*.trace.json.gz", recursive=True)[0]))["traceEvents"]
    return walls, events


def names(events, kind: str) -> dict:
    """The trace's "process_name" (keyed by pid) or "thread_name" (keyed by (pid, tid)) metadata."""
    key = (lambda e: e["pid"]) if kind == "process_name" else (lambda e: (e["pid"], e["tid"]))
    return {key(e): str(e.get("args", {}).get("name")) for e in events if e.get("ph") == "M" and e.get("name") == kind}
