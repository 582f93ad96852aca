"""Shared set-up of the Winograd experiments: one 64->64 3x3 conv on an SxS input (S env, default 128),
the F(4,3) matrices (Lavin & Gray), the direct conv, and the chain/bench helpers they are timed with."""
import os, time
import numpy as np, jax, jax.numpy as jnp
from jax import lax
np.random.seed(0)
S = int(os.environ.get("S", 128))
x = jnp.asarray(np.random.rand(1,S,S,64).astype(np.float32))
w = jnp.asarray(np.random.randn(3,3,64,64).astype(np.float32)*0.05)
b = jnp.asarray(np.random.randn(64).astype(np.float32)*0.01)
from accel.conv.winograd import AT, BT, G  # noqa: F401  (the F(4,3) matrices, for the experiments that import this)
n = 10
def direct(x, w, b):
    return lax.conv_general_dilated(x, w, (1,1), "SAME", dimension_numbers=("NHWC","HWIO","NHWC")) + b
def chain(f):
    @jax.jit
    def g(x, p, b):
        for _ in range(n): x = jax.nn.relu(f(x, p, b))
        return x
    return g
def bench(f, *a):
    f(*a).block_until_ready(); ts=[]
    for _ in range(7):
        t=time.perf_counter(); f(*a).block_until_ready(); ts.append(time.perf_counter()-t)
    return "%.2f" % (min(ts)/n*1e3)
