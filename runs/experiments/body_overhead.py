"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): RCAN body (10 groups x 20 RCABs under lax.scan) with and without the non-conv RCAB ops, 128x128.

Run: python runs/experiments/body_overhead.py
"""
import time, numpy as np, jax, jax.numpy as jnp
from jax import lax
S=128; C=64; G=10; B=20
rng = np.random.default_rng(0)
x = jnp.asarray(rng.random((1,S,S,C)).astype(np.float32))
ws = jnp.asarray(rng.standard_normal((G,B,2,3,3,C,C)).astype(np.float32)*0.03)
bs = jnp.asarray(rng.standard_normal((G,B,2,C)).astype(np.float32)*0.01)
d1 = jnp.asarray(rng.standard_normal((G,B,C,4)).astype(np.float32)*0.1); d2 = jnp.asarray(rng.standard_normal((G,B,4,C)).astype(np.float32)*0.1)
gw = jnp.asarray(rng.standard_normal((G,3,3,C,C)).astype(np.float32)*0.03)
conv = lambda x, w: lax.conv_general_dilated(x, w, (1,1), "SAME", dimension_numbers=("NHWC","HWIO","NHWC"))
def rcab(x, p):
    w, b, a1, a2 = p
    r = jax.nn.relu(conv(x, w[0]) + b[0])
    r = conv(r, w[1]) + b[1]
    g = jax.nn.sigmoid(jax.nn.relu(r.mean((1,2)) @ a1) @ a2)
    return x + r * g[:, None, None, :], None
def bare(x, p):
    w, b, a1, a2 = p
    return conv(conv(x, w[0]), w[1]), None
def model(block):
    @jax.jit
    def f(x, ws, bs, d1, d2, gw):
        def group(h, p):
            r, _ = lax.scan(block, h, p[:4])
            return h + conv(r, p[4]), None
        r, _ = lax.scan(group, x, (ws, bs, d1, d2, gw))
        return x + r
    return f
def bench(f, *a):
    f(*a).block_until_ready(); ts=[]
    for _ in range(3):
        t=time.perf_counter(); f(*a).block_until_ready(); ts.append(time.perf_counter()-t)
    return "%.3f" % min(ts)
for _ in range(2):
    print("rcab-scan", bench(model(rcab), x, ws, bs, d1, d2, gw), "bare-scan", bench(model(bare), x, ws, bs, d1, d2, gw))
