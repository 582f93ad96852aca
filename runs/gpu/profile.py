"""Where the GPU time of one official ×2 forward goes, accel against torch, in full float32 (accel/PERFORMANCE.md,
"GPU": at 256×256 accel is 1.08× torch's eager NCHW). accel: a jax.profiler trace of one forward after two
warm-ups, the device's kernels summed by name; torch: torch.profiler over one forward (NCHW, TF32 off, cuDNN
benchmark mode), its CUDA kernels summed by name. Prints the top kernels of each with their share.

Run on a GPU machine: python runs/gpu/profile.py [SIZE] [TOP]   (default 256 15)
"""
import collections
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiments"))
import tracing  # noqa: E402  (runs/experiments/tracing.py)


def accel_kernels(size: int) -> tuple[float, collections.Counter]:
    import jax
    import jax.numpy as jnp

    import accel
    from reference import RCANConfig, init_weights
    jax.config.update("jax_default_matmul_precision", "highest")
    config = RCANConfig.official(2)
    model = accel.model_from_weights(init_weights(config, 0), config, dtype=jnp.float32)
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32))
    for _ in range(2):
        accel.forward(model, x).block_until_ready()
    (wall,), events = tracing.trace(lambda: accel.forward(model, x).block_until_ready())
    gpu = {pid for pid, name in tracing.names(events, "process_name").items() if "GPU" in name}
    kinds = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("pid") in gpu:
            kinds[e["name"]] += e.get("dur", 0) / 1e3
    return wall, kinds


def torch_kernels(size: int) -> tuple[float, collections.Counter]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from reference import RCANConfig, init_weights
    from tools import torch_rcan
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    config = RCANConfig.official(2)
    net = torch_rcan.from_weights(init_weights(config, 0), config).cuda()
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (1, 3, size, size)).astype(np.float32)).cuda()
    with torch.inference_mode():
        for _ in range(2):
            net(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            t = time.perf_counter()
            net(x)
            torch.cuda.synchronize()
            wall = time.perf_counter() - t
    kinds = collections.Counter()
    for e in prof.key_averages():
        total = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if total:
            kinds[e.key] += total / 1e3
    return wall, kinds


def show(name: str, wall: float, kinds: collections.Counter, top: int):
    busy = sum(kinds.values())
    print(f"{name}: forward {wall * 1e3:.1f} ms (traced), device kernels {busy:.1f} ms")
    for kernel, ms in kinds.most_common(top):
        print(f"  {ms:8.2f} ms {100 * ms / max(busy, 1e-9):5.1f} %  {kernel[:110]}")


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    show(f"accel {size}×{size} float32", *accel_kernels(size), top)
    import torch
    if torch.cuda.is_available():
        show(f"torch NCHW {size}×{size} float32", *torch_kernels(size), top)
    else:
        print("torch: no CUDA device")
