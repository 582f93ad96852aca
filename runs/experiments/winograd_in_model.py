"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): the full official x2 model (random weights) by convolution path,
compiled side by side and timed in turns in one process (ms, min/median).

Run: PYTHONPATH=. S=128 python runs/experiments/winograd_in_model.py
"""
import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

import accel
from accel.conv import autotune
from accel.api import _merge_and_run
from interleaved import compare
from reference import RCANConfig, init_weights

S = int(os.environ.get("S", 128))
config = RCANConfig.official(2)
g, state = nnx.split(accel.model_from_weights(init_weights(config, 0), config))
lr = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (1, S, S, 3)).astype(np.float32))
fs = {p: (lambda f: lambda st, x: f(g, st, x, None))(autotune.jit(_merge_and_run, p, static_argnums=0))
      for p in os.environ.get("PATHS", " ".join(autotune.PATHS)).split()}
print(S, compare(fs, (state, lr), int(os.environ.get("R", 4))))
