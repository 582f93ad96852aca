"""Process-wide JAX settings that accel turns on at import, each with an environment switch.

- The persistent compilation cache, so a second run of the same shape starts fast.
  RCAN_JAX_CACHE=off disables it; RCAN_JAX_CACHE=/some/dir moves it (default: ~/.cache/rcan-jax,
  or $XDG_CACHE_HOME/rcan-jax).
- No global XLA_FLAGS: the one option that changes the CPU convolution (YNNPACK) wins at some shapes
  and loses at others, so accel/autotune.py sets it per compilation (accel/PERFORMANCE.md).
- Memory: XLA's compiler and the worker threads free tens of MB that glibc keeps mapped in its
  arenas; release_free_memory() (called after every forward) hands them back to the OS. And at the
  first forward, glibc's mmap threshold is fixed at 1 MB (it otherwise rises to the largest block
  freed, after which XLA's per-call temporaries come from the heap, where fragments of one or two of
  them stay resident): full model at 64×64, steady peak 33–43 MB -> 33 MB. Not at import: training
  (which never calls forward) reuses its large buffers from the heap, and is 30 % slower without.
  RCAN_MALLOC=default leaves malloc alone.
"""
import ctypes
import ctypes.util
import os


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


def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()
M_MMAP_THRESHOLD = -3   # glibc's mallopt parameter
_threshold_fixed = False


def fix_mmap_threshold() -> None:
    """Blocks of 1 MB and more get their own mappings, returned to the OS when freed (once per process)."""
    global _threshold_fixed
    if _threshold_fixed or os.environ.get("RCAN_MALLOC", "") == "default":
        return
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(M_MMAP_THRESHOLD, 1 << 20)
    _threshold_fixed = True


def release_free_memory() -> None:
    """Return the heap's free pages to the OS (glibc malloc_trim); a no-op on other C libraries."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
