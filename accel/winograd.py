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

The Winograd-domain intermediates are 2.25× the activations (input side and output side);
accel/pipeline.py counts them when it plans tiles. (Cutting the image into strips of tile rows
keeps them smaller but multiplies the compiled code, which costs more resident memory than it
saves: accel/PERFORMANCE.md.) Float32 error: ≈ 4e-6 relative per convolution (tests/test_accel.py measures it).
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
_ACTIVE = contextvars.ContextVar("rcan_winograd", default=False)
_NHWC = ("NHWC", "HWIO", "NHWC")


@contextlib.contextmanager
def enabled(on: bool = True):
    """Within this block, models traced route their square 3×3 convolutions through conv3x3."""
    token = _ACTIVE.set(on)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, **kwargs):
    """lax.conv_general_dilated, but Winograd for a plain SAME 3×3 conv with Cin = Cout when enabled().

    Only the square convolutions of the body (≈ 99 % of RCAN's work) qualify: the head and tail have 3
    channels on one side (a GEMM that thin gains nothing) and the upsampler's 4× wider output would
    quadruple the Winograd-domain memory for ~1 % of the work.
    """
    plain = (window_strides in ((1, 1), [1, 1]) and padding == "SAME" and feature_group_count == 1
             and lhs_dilation in (None, (1, 1)) and rhs_dilation in (None, (1, 1)))
    if (_ACTIVE.get() and plain and lhs.ndim == 4 and rhs.shape[:2] == (3, 3) and rhs.shape[2] == rhs.shape[3]
            and dimension_numbers == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
            and not kwargs.get("preferred_element_type")):
        return conv3x3(lhs, rhs)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, **kwargs)


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


def conv3x3(x, kernel, bias=None):
    """SAME 3×3 convolution, stride 1: x [N, H, W, Cin], kernel HWIO [3, 3, Cin, Cout] -> [N, H, W, Cout].

    Any H and W: the input is zero-padded up to whole tiles (what SAME padding sees past the edge)
    and the output cropped back.
    """
    n, H, W, _ = x.shape
    th, tw = -(-H // 4), -(-W // 4)
    xp = jnp.pad(x, ((0, 0), (1, 1 + 4 * th - H), (1, 1 + 4 * tw - W), (0, 0)))
    V = _input_transform(xp, th, tw)
    M = lax.dot_general(V, filter_transform(kernel), (((2,), (1,)), ((0,), (0,))))   # 36 GEMMs
    y = _output_transform(M, n, th, tw)[:, :H, :W]
    return y if bias is None else y + bias
