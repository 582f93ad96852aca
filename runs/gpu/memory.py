"""Where accel's device memory goes on a GPU (accel/PERFORMANCE.md, "GPU"; history in runs/PERFORMANCE_LOG.md): the official ×2 model in full
float32 at one size, each setting in a fresh process, with the allocator's bytes in use and its peak (jax
memory_stats, which cannot reset its peak) after each step: model built, forward compiled ahead of time
(XLA's conv autotuning allocates scratch here unless the persistent cache has the executable), first call,
ten more calls; with XLA's own account of the executable (temp, argument, output MB) and the compile time
(a cache hit takes well under a second). torch's steady peak is the bench's (`torch.cuda.reset_peak_memory_stats`).

Run on a GPU machine: python runs/gpu/memory.py [SIZE [SETTING...]]   (default 64, all; one JSON line per setting)
"""
import json
import os
import subprocess
import sys
import time

SETTINGS = {   # name -> extra environment ("…-again": the same, now that the cache holds the executable)
    "xla": {"RCAN_CONV": "xla"},
    "xla-again": {"RCAN_CONV": "xla"},
    "xla-nchw": {"RCAN_CONV": "xla-nchw"},
    "xla-nchw-again": {"RCAN_CONV": "xla-nchw"},
    "winograd": {"RCAN_CONV": "winograd"},
    "winograd-again": {"RCAN_CONV": "winograd"},
    "auto": {"RCAN_CONV": "auto"},                     # the autotune times the paths in this process
    "auto-again": {"RCAN_CONV": "auto"},               # its decision from disk
    "xla-autotune0": {"RCAN_CONV": "xla", "XLA_FLAGS": "--xla_gpu_autotune_level=0"},
    "xla-no-command-buffers": {"RCAN_CONV": "xla", "XLA_FLAGS": "--xla_gpu_enable_command_buffer="},
    "xla-nchw-no-command-buffers": {"RCAN_CONV": "xla-nchw", "XLA_FLAGS": "--xla_gpu_enable_command_buffer="},
    "xla-nchw-autotune0": {"RCAN_CONV": "xla-nchw", "XLA_FLAGS": "--xla_gpu_autotune_level=0"},
    "xla-nchw-conv-fusion": {"RCAN_CONV": "xla-nchw", "XLA_FLAGS": "--xla_gpu_experimental_enable_conv_fusion=true"},
}


def child(size: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import accel
    from accel import api
    from accel.conv import autotune
    from accel.platform import runtime
    from reference import RCANConfig, init_weights
    runtime.configure_from_env()
    jax.config.update("jax_default_matmul_precision", "highest")
    device = jax.devices()[0]
    stats = lambda: device.memory_stats() or {}   # noqa: E731 (None on a CPU: zeros there)
    def mb():   # the allocator's bytes, and those of the arrays Python still holds
        return {**{k: round(stats().get(k, 0) / 1e6, 1) for k in ("bytes_in_use", "peak_bytes_in_use")},
                "live_arrays": round(sum(a.nbytes for a in jax.live_arrays()) / 1e6, 1)}
    steps = {"start": mb()}
    config = RCANConfig.official(2)
    model = accel.model_from_weights(init_weights(config, 0), config, dtype=jnp.float32, conv=autotune.env_setting())
    steps["model"] = mb()
    t = time.perf_counter()
    xla = api.compiled_memory(model, (1, size, size, 3))
    compile_s = time.perf_counter() - t
    steps["compiled"] = mb()
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32))
    accel.forward(model, x).block_until_ready()
    steps["first call"] = mb()
    for _ in range(10):
        accel.forward(model, x).block_until_ready()
    steps["11 calls"] = mb()
    path = autotune.choose(1, size, size, config.n_feats, jnp.float32, model.conv_path)
    return {"path": path, "steps_mb": steps, "xla_memory_mb": {k: round(v, 1) for k, v in xla.items()},
            "compile_s": round(compile_s, 2), "device": device.device_kind}


def main(size: int, names: list[str]):
    for name in names or SETTINGS:
        env = SETTINGS[name]
        r = subprocess.run([sys.executable, __file__, "--child", str(size)], capture_output=True, text=True,
                           env={**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", **env})
        line = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else None
        out = json.loads(line) if line else {"error": r.stderr.strip().splitlines()[-1:]}
        print(json.dumps({"setting": name, "size": size, **out}), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(int(sys.argv[2]))))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 64, sys.argv[2:])
