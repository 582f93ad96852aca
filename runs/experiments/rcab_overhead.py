"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): 20 RCABs vs the same 40 bare convs, 128x128, unrolled.

Run: python runs/experiments/rcab_overhead.py
"""
import time, numpy as np, jax, jax.numpy as jnp
from jax import lax
np.random.seed(0)
S=128; C=64; n=20
x = jnp.asarray(np.random.rand(1,S,S,C).astype(np.float32))
ws = jnp.asarray(np.random.randn(n,2,3,3,C,C).astype(np.float32)*0.03)
bs = jnp.asarray(np.random.randn(n,2,C).astype(np.float32)*0.01)
d1 = jnp.asarray(np.random.randn(n,C,4).astype(np.float32)*0.1); d2 = jnp.asarray(np.random.randn(n,4,C).astype(np.float32)*0.1)
conv = lambda x, w: lax.conv_general_dilated(x, w, (1,1), "SAME", dimension_numbers=("NHWC","HWIO","NHWC"))
@jax.jit
def rcabs(x, ws, bs, d1, d2):
    for i in range(n):
        r = jax.nn.relu(conv(x, ws[i,0]) + bs[i,0])
        r = conv(r, ws[i,1]) + bs[i,1]
        g = jax.nn.sigmoid(jax.nn.relu(r.mean((1,2)) @ d1[i]) @ d2[i])
        x = x + r * g[:, None, None, :]
    return x
@jax.jit
def convs(x, ws, bs, d1, d2):
    for i in range(n):
        x = conv(conv(x, ws[i,0]), ws[i,1])
    return x
def bench(f, *a):
    f(*a).block_until_ready(); ts=[]
    for _ in range(7):
        t=time.perf_counter(); f(*a).block_until_ready(); ts.append(time.perf_counter()-t)
    return "%.1f" % (min(ts)*1e3)
for _ in range(2):
    print("rcabs", bench(rcabs, x, ws, bs, d1, d2), "convs", bench(convs, x, ws, bs, d1, d2))
