"""Official RCAN checkpoints (legacy/zip .pt, BasicSR, safetensors) -> the canonical file. No torch, no pickle execution."""
from .convert import (
           Converted,
           ConvertError,
           convert,
           info,
           load_checkpoint,
           write_canonical,
)
from .safe_pickle import UnsafePickleError
from .torch_file import CheckpointError, read_checkpoint

__all__ = ["load_checkpoint", "convert", "info", "write_canonical", "read_checkpoint", "ConvertError",
           "CheckpointError", "UnsafePickleError", "Converted"]
