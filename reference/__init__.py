"""Pure-NumPy RCAN: the ground truth and the thing people read (see rcan.py)."""
from .config import PRESETS, RCANConfig
from .rcan import conv2d, conv2d_naive, forward, pixel_shuffle
from .weights import (
                      FORMAT,
                      WeightsError,
                      check_weights,
                      init_weights,
                      load_weights,
                      official_shapes,
                      save_weights,
)

__all__ = ["RCANConfig", "PRESETS", "forward", "conv2d", "conv2d_naive", "pixel_shuffle", "WeightsError",
           "load_weights", "save_weights", "init_weights", "official_shapes", "check_weights", "FORMAT"]
