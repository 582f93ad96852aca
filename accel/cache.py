"""JAX's persistent compilation cache, on by default so a second run of the same shape starts fast.

RCAN_JAX_CACHE=off disables it; RCAN_JAX_CACHE=/some/dir moves it (default: ~/.cache/rcan-jax, or
$XDG_CACHE_HOME/rcan-jax).
"""
import os

import jax


def cache_dir() -> str | None:
    setting = os.environ.get("RCAN_JAX_CACHE", "")
    if setting.lower() in ("off", "0", "false", "no"):
        return None
    if setting:
        return setting
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rcan-jax")


def enable() -> None:
    folder = cache_dir()
    if folder is None:
        return
    jax.config.update("jax_compilation_cache_dir", folder)
    # Cache every compile of the model: the defaults skip compiles under 1 s and small programs.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
