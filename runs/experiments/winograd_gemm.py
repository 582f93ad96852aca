"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): the 36 batched GEMMs of Winograd F(4x4,3x3) at 128x128 (T=1024 tiles,
64->64), 10 chained, with XLA's default fusions and with YNNPACK's dot fusion, by what follows the dot.

Run: PYTHONPATH=. python runs/experiments/winograd_gemm.py   (T=4096 env: 256x256)
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from interleaved import compare

T, n = int(os.environ.get("T", 1024)), 10
V = jnp.asarray(np.random.rand(36, T, 64).astype(np.float32))
U = jnp.asarray(np.random.randn(36, 64, 64).astype(np.float32) * 0.1)
YNN = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}
dot = lambda V, U: lax.dot_general(V, U, (((2,), (1,)), ((0,), (0,))))
swap = lambda M: jnp.concatenate([M[18:], M[:18]])   # a non-elementwise consumer, like the output transform
after = {
    "dot+relu": lambda V, U: jax.nn.relu(dot(V, U)),
    "dot then slices": lambda V, U: swap(dot(V, U)),
    "dot+V then slices": lambda V, U: swap(dot(V, U) + V),
    "one GEMM of the same size": lambda V, U: (V.reshape(-1, 64) @ U[0]).reshape(V.shape),
}


def chain(f, opts):
    def g(V, U):
        for _ in range(n):
            V = f(V, U)
        return V
    return jax.jit(g, compiler_options=opts)


fs = {f"{name}, {label}": chain(f, opts) for name, f in after.items()
      for label, opts in (("default", None), ("ynn dot", YNN))}
print(T, compare(fs, (V, U), 5, n))
