"""RCAN in JAX + flax.nnx: load_model, forward, and the CLIs (upscale, evaluate, train, bench)."""
from . import runtime as _runtime

_runtime.enable_cache()

from .api import DEFAULT_WEIGHTS, forward, load_model, model_from_weights, model_weights  # noqa: E402
from .model import LAYOUTS, RCAN, Layout  # noqa: E402
from .pipeline import upscale_image  # noqa: E402

__all__ = ["load_model", "forward", "upscale_image", "model_from_weights", "model_weights", "RCAN", "Layout", "LAYOUTS",
           "DEFAULT_WEIGHTS"]
