"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): ways to run one 3×3 conv 64→64 at 128×128 in bfloat16 on a CPU with
bfloat16 dot units (AVX512-BF16, AMX), against XLA's own convolution and torch (oneDNN).

Each path gets float32 input and weights and returns float32; "rms" is its RMS error relative to the
float32 convolution at full precision. Best of 7 runs after a warm-up, 2 threads.

Run: python runs/experiments/bf16_conv_paths.py
"""
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from jax import lax

from accel.platform import runtime
from accel.conv import winograd

H = W = 128
C = 64
DN = ("NHWC", "HWIO", "NHWC")
FLOP = 2 * H * W * 9 * C * C


def best(f, *args, n=7):
    f(*args)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t)
    return min(times)


def direct(x, w, dtype):
    return lax.conv_general_dilated(x.astype(dtype), w.astype(dtype), (1, 1), "SAME", dimension_numbers=DN,
                                    preferred_element_type=jnp.float32)


def shifted_dots(x, w, dtype):
    """Nine [H·W, C]·[C, C] dots of shifted views, float32 accumulation."""
    x, w = x.astype(dtype), w.astype(dtype)
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = 0
    for i in range(3):
        for j in range(3):
            out = out + lax.dot_general(xp[:, i:i + H, j:j + W], w[i, j], (((3,), (0,)), ((), ())),
                                        preferred_element_type=jnp.float32)
    return out


def im2col(x, w, dtype):
    """One [H·W, 9C]·[9C, C] dot over the nine shifted views concatenated along channels."""
    x, w = x.astype(dtype), w.astype(dtype)
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = jnp.concatenate([xp[:, i:i + H, j:j + W] for i in range(3) for j in range(3)], axis=-1)
    return lax.dot_general(cols, w.reshape(9 * C, C), (((3,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def winograd_bf16_gemms(x, w, dtype):
    """Winograd F(4×4, 3×3) with the transforms in float32 and the 36 GEMMs on bfloat16 operands."""
    th, tw = H // 4, W // 4
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    U = winograd.filter_transform(w).astype(dtype)
    V = winograd._input_transform(xp, th, tw).astype(dtype)
    M = lax.dot_general(V, U, (((2,), (1,)), ((0,), (0,))), preferred_element_type=jnp.float32)
    return winograd._output_transform(M, 1, th, tw)


# Winograd F(2×2, 3×3): coefficients of at most 1 (its error stays near bfloat16's own), 16 GEMMs per 2×2 tile.
BT2 = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G2 = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float64)
AT2 = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def winograd_f2_bf16_gemms(x, w, dtype):
    th, tw = H // 2, W // 2
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows = [xp[:, k:k + 2 * th:2] for k in range(4)]
    t = jnp.stack([winograd._combine(BT2[a], rows) for a in range(4)])
    cols = [t[:, :, :, k:k + 2 * tw:2] for k in range(4)]
    V = jnp.stack([winograd._combine(BT2[b], cols) for b in range(4)], axis=1).reshape(16, -1, C)
    U = jnp.einsum("ai,ijcd,bj->abcd", jnp.asarray(G2, w.dtype), w, jnp.asarray(G2, w.dtype)).reshape(16, C, C)
    M = lax.dot_general(V.astype(dtype), U.astype(dtype), (((2,), (1,)), ((0,), (0,))),
                        preferred_element_type=jnp.float32).reshape(4, 4, 1, th, tw, C)
    z = jnp.stack([winograd._combine(AT2[j], [M[:, b] for b in range(4)]) for j in range(2)], axis=1)
    y = jnp.stack([winograd._combine(AT2[i], [z[a] for a in range(4)]) for i in range(2)])
    return y.transpose(2, 3, 0, 4, 1, 5).reshape(1, H, W, C)


def main():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, H, W, C)).astype(np.float32)
    w = (rng.standard_normal((3, 3, C, C)) * 0.05).astype(np.float32)
    ref = np.asarray(jax.jit(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN,
                                                                   precision="highest"))(x, w))
    a = jnp.asarray(rng.standard_normal((H * W, 9 * C)), jnp.bfloat16)
    b = jnp.asarray(rng.standard_normal((9 * C, C)), jnp.bfloat16)
    for dtype in (jnp.float32, jnp.bfloat16):
        dot = jax.jit(lambda a, b: lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32))
        t = best(dot, a.astype(dtype), b.astype(dtype))
        print(f"plain dot [{H * W}×{9 * C}]·[{9 * C}×{C}]  {jnp.dtype(dtype).name:8s} {1e3 * t:6.2f} ms "
              f"{FLOP / t / 1e9:5.0f} GFLOP/s")
    for name, path in (("xla direct conv", direct), ("9 shifted dots", shifted_dots), ("im2col + 1 dot", im2col),
                       ("winograd, bf16 GEMMs", winograd_bf16_gemms), ("F(2×2), bf16 GEMMs", winograd_f2_bf16_gemms)):
        for dtype in (jnp.float32, jnp.bfloat16):
            f = jax.jit(lambda x, w, path=path, dtype=dtype: path(x, w, dtype))
            out = np.asarray(f(x, w), np.float32)
            rms = np.sqrt(np.mean((out - ref) ** 2) / np.mean(ref ** 2))
            t = best(f, x, w)
            print(f"{name:22s} {jnp.dtype(dtype).name:8s} {1e3 * t:6.2f} ms {FLOP / t / 1e9:5.0f} GFLOP/s  rms {rms:.1e}")
    torch.set_num_threads(2)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    wt = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous()
    for dtype in (torch.float32, torch.bfloat16):
        with torch.no_grad():
            f = lambda: torch.nn.functional.conv2d(xt.to(dtype), wt.to(dtype), padding=1)
            out = f().float().permute(0, 2, 3, 1).numpy()
            rms = np.sqrt(np.mean((out - ref) ** 2) / np.mean(ref ** 2))
            t = best(f)
        print(f"{'torch conv2d':22s} {str(dtype)[6:]:8s} {1e3 * t:6.2f} ms {FLOP / t / 1e9:5.0f} GFLOP/s  rms {rms:.1e}")


if __name__ == "__main__":
    runtime.cap_isa()   # RCAN_MAX_ISA, where set, for XLA and torch as well
    main()
