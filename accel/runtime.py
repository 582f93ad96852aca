"""Process-wide JAX settings that accel turns on at import, each with an environment switch.

- The persistent compilation cache, so a second run of the same shape starts fast.
  RCAN_JAX_CACHE=off disables it; RCAN_JAX_CACHE=/some/dir moves it (default: ~/.cache/rcan-jax,
  or $XDG_CACHE_HOME/rcan-jax).
- XLA CPU tuning: route dot fusions through the YNNPACK library, measured ~10 % faster on the full
  model with the same numerics (accel/PERFORMANCE.md). RCAN_XLA_TUNING=off leaves XLA_FLAGS alone.
  It only takes effect if the JAX backend has not started yet (import accel before using jax).
"""
import os

CPU_FLAGS = ["--xla_cpu_experimental_ynn_fusion_type=dot"]


def tune_xla() -> None:
    if os.environ.get("RCAN_XLA_TUNING", "").lower() in ("off", "0", "false", "no"):
        return
    flags = os.environ.get("XLA_FLAGS", "")
    extra = [f for f in CPU_FLAGS if f.split("=")[0] not in flags]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([flags, *extra]).strip()


def cache_dir() -> str | None:
    setting = os.environ.get("RCAN_JAX_CACHE", "")
    if setting.lower() in ("off", "0", "false", "no"):
        return None
    if setting:
        return setting
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rcan-jax")


def enable_cache() -> None:
    import jax
    folder = cache_dir()
    if folder is None:
        return
    jax.config.update("jax_compilation_cache_dir", folder)
    # Cache every compile of the model: the defaults skip compiles under 1 s and small programs.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
