"""Pure-NumPy RCAN: the ground truth and the thing people read (see rcan.py)."""
from .config import RCANConfig, PRESETS
from .rcan import forward, conv2d, conv2d_naive, pixel_shuffle
from .weights import (WeightsError, load_weights, save_weights, init_weights, official_shapes,
                      check_weights, FORMAT)

__all__ = ["RCANConfig", "PRESETS", "forward", "conv2d", "conv2d_naive", "pixel_shuffle", "WeightsError",
           "load_weights", "save_weights", "init_weights", "official_shapes", "check_weights", "FORMAT"]
