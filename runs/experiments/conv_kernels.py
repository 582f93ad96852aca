"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): the convolution kernels of accel/conv/cpu_kernel.py against the XLA paths
and torch (oneDNN) in the model's setting: a scanned chain of 10 convs 64→64 (each followed by a ReLU),
in one dtype (bfloat16 or float32) in and out, ms per conv (min / median of 5 interleaved rounds) and
GFLOP/s counted as the direct convolution's FLOPs (so Winograd's fewer multiplications show as more);
"rms" is the error of one conv relative to the exact convolution of the same input.

Run: PYTHONPATH=runs/experiments python runs/experiments/conv_kernels.py [--float32] [--build NAME] [SIZE ...]
(default bfloat16; sizes 64 128 256; --build: the kernels' build, e.g. avx512bf16 on a CPU with AMX;
kernels without that build are left out). With RCAN_MAX_ISA=avx2 an AVX-512 CPU runs as an AVX2 one: the
kernels' AVX2 build, XLA's code and torch's held to the same instructions (accel/platform/hardware.py).
"""
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from interleaved import compare
from jax import lax

from accel.conv import autotune, cpu_kernel, registry
from accel.platform import runtime

C, N = 64, 10
PATHS = {jnp.bfloat16: ["kernel-direct", "kernel-winograd2", "kernel-winograd4", "winograd-ynn", "winograd2", "xla"],
         jnp.float32: ["kernel-winograd4", "winograd-ynn", "winograd", "ynn", "xla"]}


def conv(x, w, b):
    if registry.applies(w.shape):
        return registry.square_conv(x, w, b)
    y = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return (y + b).astype(x.dtype)


def chain(x, ws, b):
    return lax.scan(lambda h, w: (jax.nn.relu(conv(h, w, b)), None), x, ws)[0]


def torch_ms(x, ws, b, dtype, rounds=5):
    xt = torch.from_numpy(np.array(x, np.float32)).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    xt = xt.to(dtype)
    wt = [torch.from_numpy(np.asarray(w, np.float32)).permute(3, 2, 0, 1).to(dtype) for w in ws]
    bt = torch.from_numpy(np.asarray(b, np.float32)).to(dtype)

    def run():
        h = xt
        for w in wt:
            h = torch.relu(torch.nn.functional.conv2d(h, w, bt, padding=1))
        return h
    times = []
    with torch.no_grad():
        run()
        for _ in range(rounds):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
    return "%.2f/%.2f" % (min(times) / N * 1e3, statistics.median(times) / N * 1e3)


def main(sizes, dtype):
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    ws = jnp.asarray(rng.standard_normal((N, 3, 3, C, C)) * 0.05, dtype)
    b = jnp.asarray(rng.standard_normal(C) * 0.1, dtype)
    for S in sizes:
        x = jnp.asarray(rng.standard_normal((1, S, S, C)), dtype)
        exact = lax.conv_general_dilated(x.astype(jnp.float32), ws[0].astype(jnp.float32), (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest")
        exact = exact + b.astype(jnp.float32)
        fs = {p: autotune.jit(chain, p) for p in PATHS[dtype] if p in autotune.paths(dtype)}
        times = compare(fs, (x, ws, b), 5, N)
        times["torch (oneDNN)"] = torch_ms(x, ws, b, torch.bfloat16 if dtype == jnp.bfloat16 else torch.float32)
        flop = 2 * S * S * 9 * C * C
        for name, t in times.items():
            if name in fs:
                one = autotune.jit(lambda x, w, b: conv(x, w, b), name)(x, ws[0], b).astype(jnp.float32)
                rms = float(jnp.sqrt(jnp.mean((one - exact) ** 2) / jnp.mean(exact ** 2)))
            else:
                rms = float("nan")
            err = "  —" if rms != rms else f"{rms:.1e}"
            print(f"{S}×{S}  {name:18s} {t:>13s} ms  {flop / float(t.split('/')[0]) / 1e6:5.0f} GFLOP/s  rms {err}")


if __name__ == "__main__":
    runtime.cap_isa()   # RCAN_MAX_ISA, where set, for XLA and torch as well
    args = sys.argv[1:]
    if "--build" in args:
        build = args.pop(args.index("--build") + 1)
        args.remove("--build")
        # That build only (the kernels without one are left out), as on a CPU whose best build it is.
        cpu_kernel.native_builds = lambda library: [build] if build in cpu_kernel.LIBRARIES[library].builds else []
    main([int(s) for s in args if s != "--float32"] or [64, 128, 256],
         jnp.float32 if "--float32" in args else jnp.bfloat16)
