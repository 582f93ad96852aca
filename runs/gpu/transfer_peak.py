"""Device memory of putting one 29.5 MB array (the official model's largest stacked kernel, [10, 20, 3, 3, 64, 64]
float32) on the GPU, by way of transfer: bytes in use and the allocator's peak after it, in a fresh process per
way (the peak cannot be reset). A transient above the array's own size raises every later peak reading.

Run on a GPU machine: python runs/gpu/transfer_peak.py
"""
import json
import subprocess
import sys

WAYS = ("jnp.asarray", "device_put", "device_put-committed", "per-group+stack", "jnp.zeros")


def child(way: str) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    x = np.random.default_rng(0).standard_normal((10, 20, 3, 3, 64, 64)).astype(np.float32)
    device = jax.devices()[0]
    if way == "jnp.asarray":
        a = jnp.asarray(x)
    elif way == "device_put":
        a = jax.device_put(x)
    elif way == "device_put-committed":
        a = jax.device_put(x, device)
    elif way == "per-group+stack":
        a = jnp.stack([jax.device_put(g) for g in x])
    else:
        a = jnp.zeros(x.shape, x.dtype)
    a.block_until_ready()
    stats = device.memory_stats() or {}
    return {"way": way, "array_mb": round(x.nbytes / 1e6, 1),
            **{k: round(stats.get(k, 0) / 1e6, 1) for k in ("bytes_in_use", "peak_bytes_in_use")}}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(sys.argv[2])))
    else:
        for way in WAYS:
            r = subprocess.run([sys.executable, __file__, "--child", way], capture_output=True, text=True)
            print(r.stdout.strip().splitlines()[-1] if r.returncode == 0 else f"{way}: {r.stderr[-300:]}", flush=True)
