"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): accel/conv/winograd.py's conv3x3 in the model's setting (RCAB-like pairs
under lax.scan, 10 rounds) by tile rows per strip, XLA default fusions and YNNPACK's dot fusion, vs lax.conv.

Run: PYTHONPATH=. S=256 python runs/experiments/winograd_strips.py
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from accel.conv import winograd
from interleaved import compare

S, n = int(os.environ.get("S", 128)), 10
rng = np.random.default_rng(0)
x = jnp.asarray(rng.random((1, S, S, 64)).astype(np.float32))
ws = jnp.asarray(rng.standard_normal((n, 2, 3, 3, 64, 64)).astype(np.float32) * 0.05)
b = jnp.asarray(rng.standard_normal(64).astype(np.float32) * 0.01)
YNN = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}


def direct(x, w, b):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b


def strips(tiles):
    def conv(x, w, b):
        return winograd.conv3x3(x, w, b, max_tiles=tiles)
    return conv


def scanned(f, opts=None):
    def g(x, ws, b):
        def body(h, w):
            return h + f(jax.nn.relu(f(h, w[0], b)), w[1], b) * 0.1, None
        return lax.scan(body, x, ws)[0]
    return jax.jit(g, compiler_options=opts)


fs = {"direct": scanned(direct)}
for tiles in (512, 1024, 2048, 10**6):
    fs[f"default, {tiles} tiles"] = scanned(strips(tiles))
    fs[f"ynn, {tiles} tiles"] = scanned(strips(tiles), YNN)
print(S, compare(fs, (x, ws, b), 3, 2 * n))
