"""3×3 convolution as Winograd F(4×4, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", CVPR 2016): 36 multiplications per 4×4 output tile instead of 144.

Each 6×6 input window d (stride 4) and each 3×3 filter g are moved into the Winograd domain,
V = Bᵀ d B and U = G g Gᵀ; there the convolution is an elementwise product, summed over input
channels — for every one of the 36 positions a [tiles × Cin]·[Cin × Cout] matrix product — and
Y = Aᵀ M A brings each 4×4 output tile back. Why it pays on CPU (accel/PERFORMANCE.md): the direct
convolution already runs at the FMA peak, so only fewer multiplications can beat it; the
transforms are written as sums of strided slices with the matrices' small integer coefficients
(XLA fuses them into a few passes over memory), never as dense matrix products (which cost more
than the 2.25× fewer multiplications save).

The Winograd-domain intermediates are 2.25× the activations (input side and output side); large
images are cut into strips of tile rows (MAX_TILES) so they stay in cache. Float32 error: ≈ 4e-6
relative per convolution (tests/test_accel.py measures it).
"""
from __future__ import annotations

import contextlib
import contextvars

import jax.numpy as jnp
import numpy as np
from jax import lax

# F(4×4, 3×3) on the points 0, ±1, ±2, ∞ (the matrices of Lavin & Gray).
BT = np.array([[4, 0, -5, 0, 1, 0],
               [0, -4, -4, 1, 1, 0],
               [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0],
               [0, 4, 0, -5, 0, 1]], np.float64)
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]], np.float64)
AT = np.array([[1, 1, 1, 1, 1, 0],
               [0, 1, -1, 2, -2, 0],
               [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]], np.float64)
# Strips of at most MAX_TILES tiles: the GEMMs' operands then stay in cache (YNNPACK's fused GEMMs at
# 256×256: 33–37 ms per conv whole, 19–20 ms in strips of 1024 tiles); at most MAX_STRIPS strips, since
# every strip is more compiled code, and code is resident memory.
MAX_TILES = 1024
MAX_STRIPS = 16
_ACTIVE = contextvars.ContextVar("rcan_winograd", default=False)


@contextlib.contextmanager
def enabled(on: bool = True):
    """Within this block, models traced run their square 3×3 convolutions through conv3x3."""
    token = _ACTIVE.set(on)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def applies(kernel_shape) -> bool:
    """Whether a SAME, stride-1 conv with this HWIO kernel runs as Winograd in the current trace.

    Only the square convolutions of the body (≈ 99 % of RCAN's work) qualify: the head and tail have 3
    channels on one side (a GEMM that thin gains nothing) and the upsampler's 4× wider output would
    quadruple the Winograd-domain memory for ~1 % of the work.
    """
    return _ACTIVE.get() and tuple(kernel_shape[:2]) == (3, 3) and kernel_shape[2] == kernel_shape[3]


def _combine(coefficients, parts):
    """Σ c·part over the non-zero c, with ±1 as plain adds (the transforms' sparse rows)."""
    total = None
    for c, part in zip(coefficients, parts):
        if c == 0:
            continue
        term = part if c == 1 else -part if c == -1 else part * float(c)
        total = term if total is None else total + term
    return total


def filter_transform(kernel):
    """HWIO [3, 3, Cin, Cout] -> U = G g Gᵀ as [36, Cin, Cout]."""
    g = jnp.asarray(G, kernel.dtype)
    U = jnp.einsum("ai,ijcd,bj->abcd", g, kernel, g)
    return U.reshape(36, *kernel.shape[2:])


def _input_transform(xp, th: int, tw: int):
    """Padded input [N, 4·th+2, 4·tw+2, C] -> V = Bᵀ d B for every tile, [36, N·th·tw, C]."""
    rows = [xp[:, k:k + 4 * th:4] for k in range(6)]                        # [N, th, 4·tw+2, C]
    t = jnp.stack([_combine(BT[a], rows) for a in range(6)])                # [6a, N, th, 4·tw+2, C]
    cols = [t[:, :, :, k:k + 4 * tw:4] for k in range(6)]                   # [6a, N, th, tw, C]
    V = jnp.stack([_combine(BT[b], cols) for b in range(6)], axis=1)        # [6a, 6b, N, th, tw, C]
    return V.reshape(36, -1, xp.shape[-1])


def _output_transform(M, n: int, th: int, tw: int):
    """M [36, N·th·tw, D] -> Y = Aᵀ M A, tiles laid back as [N, 4·th, 4·tw, D]."""
    M = M.reshape(6, 6, n, th, tw, M.shape[-1])
    cols = [M[:, b] for b in range(6)]
    z = jnp.stack([_combine(AT[j], cols) for j in range(4)], axis=1)       # [6a, 4j, N, th, tw, D]
    rows = [z[a] for a in range(6)]
    y = jnp.stack([_combine(AT[i], rows) for i in range(4)])                # [4i, 4j, N, th, tw, D]
    return y.transpose(2, 3, 0, 4, 1, 5).reshape(n, 4 * th, 4 * tw, -1)


def conv3x3(x, kernel, bias=None, max_tiles: int = MAX_TILES):
    """SAME 3×3 convolution, stride 1: x [N, H, W, Cin], kernel HWIO [3, 3, Cin, Cout] -> [N, H, W, Cout].

    Any H and W: the input is zero-padded up to whole tiles (what SAME padding sees past the edge)
    and the output cropped back. max_tiles: tiles per strip (the GEMMs' operands stay in cache).
    """
    n, H, W, _ = x.shape
    th, tw = -(-H // 4), -(-W // 4)
    xp = jnp.pad(x, ((0, 0), (1, 1 + 4 * th - H), (1, 1 + 4 * tw - W), (0, 0)))
    U = filter_transform(kernel)
    if bias is not None:
        # Added in the Winograd domain: column 1 of Aᵀ is all ones, so b at position (1, 1) reaches every
        # output pixel. An elementwise add right after the GEMMs is what YNNPACK's dot fusion takes in;
        # with it that fusion runs 1.8× faster at 128×128 (accel/PERFORMANCE.md).
        bias = jnp.zeros((36, 1, bias.shape[0]), x.dtype).at[7, 0].set(bias.astype(x.dtype))
    rows = max(1, max_tiles // (n * tw), -(-th // MAX_STRIPS))   # tile rows per strip
    strips = []
    for r0 in range(0, th, rows):
        r = min(rows, th - r0)
        V = _input_transform(xp[:, 4 * r0:4 * (r0 + r) + 2], r, tw)
        M = lax.dot_general(V, U, (((2,), (1,)), ((0,), (0,))))   # 36 GEMMs [tiles, Cin]·[Cin, Cout]
        strips.append(_output_transform(M if bias is None else M + bias, n, r, tw))
    y = strips[0] if len(strips) == 1 else jnp.concatenate(strips, axis=1)
    return y[:, :H, :W]
