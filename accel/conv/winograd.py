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

The Winograd-domain intermediates are 2.25× the activations (input side and output side); on a CPU
large images are cut into strips of tile rows (MAX_TILES), run one after another, so they stay in cache.
Float32 error: ≈ 4e-6 relative per convolution (tests/test_accel.py measures it). F(2×2, 3×3)
(16 multiplications per 2×2 tile) is the scheme whose GEMMs may take bfloat16 operands.
"""
from __future__ import annotations

import jax
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
# F(2×2, 3×3) (points 0, ±1, ∞): 16 multiplications per 2×2 tile instead of 36, coefficients of at most 1,
# so its error stays near bfloat16's own when the GEMMs take bfloat16 operands (F(4×4) then errs 10× more:
# runs/experiments/bf16_conv_paths.py). The bfloat16 path; transforms in float32.
BT2 = np.array([[1, 0, -1, 0],
                [0, 1, 1, 0],
                [0, -1, 1, 0],
                [0, 1, 0, -1]], np.float64)
G2 = np.array([[1, 0, 0],
               [1 / 2, 1 / 2, 1 / 2],
               [1 / 2, -1 / 2, 1 / 2],
               [0, 0, 1]], np.float64)
AT2 = np.array([[1, 1, 1, 0],
                [0, 1, -1, -1]], np.float64)
SCHEMES = {"f4": (BT, G, AT), "f2": (BT2, G2, AT2)}
# On a CPU an image of more than MAX_TILES tiles runs in strips of MAX_TILES / 2 tiles, so that the GEMMs'
# operands stay in cache; up to MAX_TILES it runs whole (`python runs/experiments/winograd_strips.py` times
# both ways).
MAX_TILES = 1024


def with_pooling(y, pooled: bool = True):
    """(y, y's mean over H and W in float32 [N, C]) — channel attention's global average pooling — if pooled,
    else y. The C++ Winograd kernels sum their output as they write it instead."""
    return (y, jnp.mean(y.astype(jnp.float32), axis=(1, 2))) if pooled else y


def _combine(coefficients, parts):
    """Σ c·part over the non-zero c, with ±1 as plain adds (the transforms' sparse rows)."""
    total = None
    for c, part in zip(coefficients, parts):
        if c == 0:
            continue
        term = part if c == 1 else -part if c == -1 else part * float(c)
        total = term if total is None else total + term
    return total


def filter_transform(kernel, g=G):
    """HWIO [3, 3, Cin, Cout] -> U = G g Gᵀ as [α², Cin, Cout] (α = 6 for F(4×4), 4 for F(2×2)).

    One [α², 9]·[9, Cin·Cout] product with G ⊗ G (U[a,b] = Σ G[a,i] G[b,j] g[i,j]): it runs in every
    forward, for each of the body's convolutions, and XLA:CPU lowers an einsum of it to transposes and two
    small dots, ten times the one dot's time."""
    a = g.shape[0]
    gg = jnp.asarray(np.kron(g, g), kernel.dtype)
    U = lax.dot_general(gg, kernel.reshape(9, -1), (((1,), (0,)), ((), ())), precision="highest")
    return U.reshape(a * a, *kernel.shape[2:])


def _input_transform(xp, th: int, tw: int, bt=BT):
    """Padded input [N, m·th+2, m·tw+2, C] -> V = Bᵀ d B for every tile, [α², N·th·tw, C] (m = α − 2)."""
    a = bt.shape[0]
    m = a - 2
    rows = [xp[:, k:k + m * th:m] for k in range(a)]                        # [N, th, m·tw+2, C]
    t = jnp.stack([_combine(bt[i], rows) for i in range(a)])                # [αi, N, th, m·tw+2, C]
    cols = [t[:, :, :, k:k + m * tw:m] for k in range(a)]                   # [αi, N, th, tw, C]
    V = jnp.stack([_combine(bt[j], cols) for j in range(a)], axis=1)        # [αi, αj, N, th, tw, C]
    return V.reshape(a * a, -1, xp.shape[-1])


def _output_transform(M, n: int, th: int, tw: int, at=AT):
    """M [α², N·th·tw, D] -> Y = Aᵀ M A, tiles laid back as [N, m·th, m·tw, D]."""
    m, a = at.shape
    M = M.reshape(a, a, n, th, tw, M.shape[-1])
    cols = [M[:, b] for b in range(a)]
    z = jnp.stack([_combine(at[j], cols) for j in range(m)], axis=1)       # [αa, mj, N, th, tw, D]
    rows = [z[i] for i in range(a)]
    y = jnp.stack([_combine(at[i], rows) for i in range(m)])                # [mi, mj, N, th, tw, D]
    return y.transpose(2, 3, 0, 4, 1, 5).reshape(n, m * th, m * tw, -1)


def conv3x3(x, kernel, bias=None, max_tiles: int | None = None, scheme: str | None = None):
    """SAME 3×3 convolution, stride 1: x [N, H, W, Cin], kernel HWIO [3, 3, Cin, Cout] -> [N, H, W, Cout].

    Any H and W: the input is zero-padded up to whole tiles (what SAME padding sees past the edge)
    and the output cropped back. max_tiles: the most tiles run whole; a larger input runs in strips of
    max_tiles / 2 tiles, one after another (the GEMMs' operands stay in cache; default MAX_TILES on a CPU,
    one strip elsewhere: a GPU spreads each op over the whole tensor, and strips would only add kernel
    launches).
    scheme: a key of SCHEMES ("f4", default, or "f2"). The transforms run in float32 at least, the GEMMs
    sum in float32, and the output has x's dtype.
    """
    scheme = scheme or "f4"
    if max_tiles is None and jax.default_backend() == "cpu":
        max_tiles = MAX_TILES
    bt, g, at = SCHEMES[scheme]
    m, a = at.shape
    work = jnp.promote_types(x.dtype, jnp.float32)
    n, H, W, _ = x.shape
    th, tw = -(-H // m), -(-W // m)
    # The GEMMs' operands: x's dtype for F(2×2) (bfloat16 operands reach the CPU's bfloat16 dot units);
    # float32 at least for F(4×4), whose transforms would magnify bfloat16's rounding 10× (a bfloat16
    # model then runs it like XLA runs its bfloat16 convolution: in float32, rounding the output).
    operand = x.dtype if scheme == "f2" else work
    U = filter_transform(kernel.astype(work), g).astype(operand)
    if bias is not None:
        # Added in the Winograd domain: column 1 of Aᵀ is all ones, so b at position (1, 1) reaches every
        # output pixel. An elementwise add right after the GEMMs is what YNNPACK's dot fusion takes in
        # (`python runs/experiments/winograd_gemm.py` times the GEMMs with and without it).
        bias = jnp.zeros((a * a, 1, bias.shape[0]), work).at[a + 1, 0].set(bias.astype(work))

    def strip(xs, rows):
        """Padded input rows [N, m·rows + 2, m·tw + 2, C] -> their output tiles [N, m·rows, m·tw, Cout]."""
        V = _input_transform(xs, rows, tw, bt).astype(operand)
        M = lax.dot_general(V, U, (((2,), (1,)), ((0,), (0,))),     # α² GEMMs [tiles, Cin]·[Cin, Cout]
                            preferred_element_type=work)
        return _output_transform(M if bias is None else M + bias, n, rows, tw, at)

    # Up to max_tiles tiles: one strip. Beyond: strips of max_tiles / 2 tiles, one after another under
    # lax.scan, so each strip's transform, GEMMs and output transform run while its data is in cache. Side
    # by side (a Python loop) XLA ran every strip's input transform before any GEMM, out of cache; the scan
    # is also one strip's compiled code.
    whole = max_tiles is None or n * th * tw <= max_tiles
    rows = th if whole else max(1, max_tiles // 2 // (n * tw))
    count = -(-th // rows)   # the last strip's extra rows read zeros and are cropped
    xp = jnp.pad(x.astype(work), ((0, 0), (1, 1 + m * rows * count - H), (1, 1 + m * tw - W), (0, 0)))
    if count == 1:
        y = strip(xp, rows)
    else:
        step = lambda _, i: (None, strip(lax.dynamic_slice_in_dim(xp, i * m * rows, m * rows + 2, axis=1), rows))
        ys = lax.scan(step, None, jnp.arange(count))[1]                     # [count, N, m·rows, m·tw, D]
        y = ys.transpose(1, 0, 2, 3, 4).reshape(n, count * m * rows, m * tw, -1)
    # The barrier hands the next op the finished output: without it XLA pushed the channel attention's
    # mean back through the output transform's transposes (a transposed copy and a reduce-window per
    # strip, which made the model slower).
    return lax.optimization_barrier(y[:, :H, :W].astype(x.dtype))
