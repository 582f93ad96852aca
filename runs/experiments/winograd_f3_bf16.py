"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): would Winograd F(3×3, 3×3) (25 multiplications per 9 outputs, between
F(2×2)'s 16 per 4 and F(4×4)'s 36 per 16) keep bfloat16 GEMM operands accurate enough?

Builds F(3, 3) by Cook-Toom on four finite points and ∞ (Aᵀ and G from the points, Bᵀ solved from the
identity the three must satisfy), then measures the RMS error, relative to the exact convolution, of one
64→64 conv's tiles with the GEMM operands (V = Bᵀ d B and U = G g Gᵀ) rounded to bfloat16 and everything
else in float64; the F(2×2) and F(4×4) matrices of accel/conv/winograd.py beside it.

Run: python runs/experiments/winograd_f3_bf16.py
"""
import ml_dtypes
import numpy as np

from accel.conv import winograd


def cook_toom(points, m=3, r=3):
    """Aᵀ [m, α], G [α, r], Bᵀ [α, α] of F(m, r) on these finite points and ∞ (α = m + r − 1)."""
    a = m + r - 1
    p = np.asarray(points, np.float64)
    at = np.zeros((m, a))
    g = np.zeros((a, r))
    for j, x in enumerate(p):
        at[:, j] = x ** np.arange(m)
        g[j] = x ** np.arange(r) / np.prod([x - q for q in p if q != x])
    at[m - 1, a - 1] = g[a - 1, r - 1] = 1
    # Σ_j Aᵀ[i, j] G[j, k] Bᵀ[j, t] = [t = i + k] for all i, k, t: linear in Bᵀ's entries.
    rows, rhs = [], []
    for i in range(m):
        for k in range(r):
            for t in range(a):
                row = np.zeros((a, a))
                row[:, t] = at[i] * g[:, k]
                rows.append(row.ravel())
                rhs.append(float(t == i + k))
    bt, *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    bt = bt.reshape(a, a)
    assert np.allclose(np.array(rows) @ bt.ravel(), rhs), "no exact Bᵀ for these points"
    return at, g, bt


def error(at, g, bt, rounded, trials=200, c=64):
    rng = np.random.default_rng(0)
    m, a = at.shape
    d = rng.standard_normal((trials, a, a, c))
    k = rng.standard_normal((3, 3, c, c)) * 0.05
    exact = np.zeros((trials, m, m, c))
    for i in range(m):
        for j in range(m):
            exact[:, i, j] = np.einsum("nklc,klcd->nd", d[:, i:i + 3, j:j + 3], k)
    V = np.einsum("ai,nijc,bj->nabc", bt, d, bt)
    U = np.einsum("ai,ijcd,bj->abcd", g, k, g)
    if rounded:
        V, U = (x.astype(ml_dtypes.bfloat16).astype(np.float64) for x in (V, U))
    y = np.einsum("ia,nabd,jb->nijd", at, np.einsum("nabc,abcd->nabd", V, U), at)
    return np.sqrt(np.mean((y - exact) ** 2) / np.mean(exact ** 2))


def main():
    schemes = {"F(2x2) accel/conv/winograd.py": (winograd.AT2, winograd.G2, winograd.BT2),
               "F(4x4) accel/conv/winograd.py": (winograd.AT, winograd.G, winograd.BT)}
    for points in ([0, 1, -1, 2], [0, 1, -1, -2], [0, 1, -1, 0.5], [0, 1, -1, -0.5], [0, 1, -1, 3]):
        schemes[f"F(3x3) points {points} + inf"] = cook_toom(points)
    for name, (at, g, bt) in schemes.items():
        print(f"{name:34s} float64 {error(at, g, bt, False):.1e}   bfloat16 operands {error(at, g, bt, True):.1e}"
              f"   max|Bt| {np.abs(bt).max():g}")


if __name__ == "__main__":
    main()
