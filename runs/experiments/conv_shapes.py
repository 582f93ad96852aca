"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): XLA vs YNNPACK conv time for the same pixel count in different N/H/W shapes.

Run: python runs/experiments/conv_shapes.py
"""
import time, numpy as np, jax, jax.numpy as jnp
from jax import lax
def f(x, w, b):
    for _ in range(10):
        x = jax.nn.relu(lax.conv_general_dilated(x, w, (1,1), "SAME", dimension_numbers=("NHWC","HWIO","NHWC")) + b)
    return x
w = jnp.asarray(np.random.randn(3,3,64,64).astype(np.float32)*0.05); b = jnp.zeros(64)
def bench(g, *a):
    g(*a).block_until_ready(); ts=[]
    for _ in range(5):
        t=time.perf_counter(); g(*a).block_until_ready(); ts.append(time.perf_counter()-t)
    return min(ts)/10*1e3
y = jax.jit(f, compiler_options={"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"})
for shp in [(1,128,128), (2,64,128), (1,64,256), (1,256,64), (4,64,64), (1,130,130), (1,128,136), (1,136,128), (1,120,128), (1,128,120)]:
    x = jnp.asarray(np.random.rand(*shp, 64).astype(np.float32))
    print(shp, "xla %.2f ynn %.2f ms per 16384 px" % tuple(bench(g, x, w, b) * 16384 / (shp[0]*shp[1]*shp[2]) for g in (jax.jit(f), y)))
