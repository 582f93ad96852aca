"""RCAN in JAX + flax.nnx: load_model, forward, and the CLIs (upscale, evaluate, train, bench).

Importing accel changes nothing process-wide; accel.runtime.configure() turns on the persistent
compilation cache and the memory hand-back that the CLIs use."""
from .api import DEFAULT_MODEL, DEFAULT_WEIGHTS, SHIPPED, forward, load_model, model_from_weights, model_weights
from .model.rcan import LOOPS, RCAN, Loops
from .platform import runtime  # accel.runtime.configure(): the CLIs' process settings, for library use
from .run.pipeline import upscale_image

__all__ = ["load_model", "forward", "upscale_image", "model_from_weights", "model_weights", "RCAN", "Loops", "LOOPS",
           "DEFAULT_WEIGHTS", "DEFAULT_MODEL", "SHIPPED", "runtime"]
