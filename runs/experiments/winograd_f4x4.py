"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): Winograd F(4x4,3x3) for one 64->64 3x3 conv vs lax.conv: error and time of 10 chained convs, and of its parts (S=256 env for 256x256).

Run: python runs/experiments/winograd_f4x4.py
"""
import jax, jax.numpy as jnp, numpy as np
from winograd_common import AT, BT, G, b, bench, chain, direct, w, x
BB = jnp.asarray(np.kron(BT, BT))   # [36 (a,b), 36 (dy,dx)]
AA = jnp.asarray(np.kron(AT, AT))   # [16 (i,j), 36 (a,b)]
U = jnp.einsum("ai,ijcd,bj->abcd", G, w, G).reshape(36, 64, 64)
def wconv(x, U, b):
    N,H,W,C = x.shape; th, tw = H//4, W//4
    xp = jnp.pad(x, ((0,0),(1,1),(1,1),(0,0)))
    win = jnp.stack([xp[:, dy:dy+4*th:4, dx:dx+4*tw:4, :] for dy in range(6) for dx in range(6)])  # [36,N,th,tw,C]
    V = (BB @ win.reshape(36, -1)).reshape(36, N*th*tw, C)
    M = jnp.einsum("ptc,pcd->ptd", V, U)
    Y = (AA @ M.reshape(36, -1)).reshape(4, 4, N, th, tw, C)
    return Y.transpose(2, 3, 0, 4, 1, 5).reshape(N, H, W, C) + b
print("err", float(jnp.abs(direct(x,w,b)-jax.jit(wconv)(x,U,b)).max()))
print("direct", bench(chain(direct), x, w, b), "wino-gemm", bench(chain(wconv), x, U, b))
def wconv_nogemm(x, U, b):
    N,H,W,C = x.shape; th, tw = H//4, W//4
    xp = jnp.pad(x, ((0,0),(1,1),(1,1),(0,0)))
    win = jnp.stack([xp[:, dy:dy+4*th:4, dx:dx+4*tw:4, :] for dy in range(6) for dx in range(6)])
    V = (BB @ win.reshape(36, -1)).reshape(36, N*th*tw, C)
    Y = (AA @ V.reshape(36, -1)).reshape(4, 4, N, th, tw, C)
    return Y.transpose(2, 3, 0, 4, 1, 5).reshape(N, H, W, C) + b
def wconv_notrans(x, U, b):  # same data volume for the GEMM only
    N,H,W,C = x.shape
    V = jnp.concatenate([x.reshape(16, -1, C)]*2 + [x.reshape(16, -1, C)[:4]])  # [36, T, C]
    M = jnp.einsum("ptc,pcd->ptd", V, U)
    return M[:16].reshape(N, H, W, C) + b
def wconv_winonly(x, U, b):
    N,H,W,C = x.shape; th, tw = H//4, W//4
    xp = jnp.pad(x, ((0,0),(1,1),(1,1),(0,0)))
    win = jnp.stack([xp[:, dy:dy+4*th:4, dx:dx+4*tw:4, :] for dy in range(6) for dx in range(6)])
    return win[:16].reshape(4, 4, N, th, tw, C).transpose(2, 3, 0, 4, 1, 5).reshape(N, H, W, C) + b
print("nogemm", bench(chain(wconv_nogemm), x, U, b), "gemm-only", bench(chain(wconv_notrans), x, U, b), "windows+interleave", bench(chain(wconv_winonly), x, U, b))
