"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): 1-D Winograd F(4,3) along W with 3x1 convs over H vs lax.conv (S=256 env for 256x256).

Run: python runs/experiments/winograd_1d.py
"""
import jax, jax.numpy as jnp, numpy as np
from jax import lax
from winograd_common import AT, BT, G, S, b, bench, chain, direct, n, w, x
def combo(coef, parts):
    out = None
    for c, p in zip(coef, parts):
        if c == 0: continue
        t = p if c == 1 else (-p if c == -1 else p * float(c))
        out = t if out is None else out + t
    return out
def filt(w):  # [3(dy),3(dx),Ci,Co] -> [6(a), 3(dy), 1, Ci, Co]
    return jnp.einsum("aj,ijcd->aicd", G, w)[:, :, None]
def w1d(x, U, b):
    N,H,W,C = x.shape; tw = W//4
    xp = jnp.pad(x, ((0,0),(1,1),(1,1),(0,0)))
    d = [xp[:, :, k:k+4*tw:4, :] for k in range(6)]           # [N, H+2, tw, C]
    V = [combo(BT[a], d) for a in range(6)]
    M = [lax.conv_general_dilated(V[a], U[a], (1,1), "VALID", dimension_numbers=("NHWC","HWIO","NHWC")) for a in range(6)]  # [N,H,tw,C]
    Y = jnp.stack([combo(AT[i], M) for i in range(4)], axis=3)   # [N,H,tw,4,C]
    return Y.reshape(N, H, W, C) + b
U = filt(w)
print("err", float(jnp.abs(direct(x,w,b)-jax.jit(w1d)(x,U,b)).max()))
for _ in range(2): print("direct", bench(chain(direct), x, w, b), "wino1d", bench(chain(w1d), x, U, b))
V = jnp.asarray(np.random.rand(1,S+2,S//4,64).astype(np.float32))
@jax.jit
def six(V, U):
    out = V[:, 1:-1]
    for _ in range(n):
        ms = [lax.conv_general_dilated(V, U[a], (1,1), "VALID", dimension_numbers=("NHWC","HWIO","NHWC")) for a in range(6)]
        out = out + sum(ms)
    return out
# XLA merges the n identical repeats into one, so undo bench()'s division by n.
print("six 3x1 convs ms", "%.2f" % (float(bench(six, V, U)) * n))
