"""Process-wide settings, switched on only by configure() (the CLIs call it; a library user opts in).

Importing or calling accel changes nothing outside it. configure() turns on, for the whole process:
- the persistent compilation cache (JAX's), so a second run of the same shape starts fast; the
  convolution-path decisions of accel/conv/autotune.py are kept beside it;
- memory hand-back: XLA's compiler and the worker threads free tens of MB that glibc keeps mapped in
  its arenas; after every forward they are handed back to the OS (malloc_trim), and at the first
  forward glibc's mmap threshold is fixed at 1 MB (it otherwise rises to the largest block freed,
  after which XLA's per-call temporaries come from the heap, where fragments of one or two of them stay
  resident): full model at 64×64, steady peak 33–43 MB -> 33 MB. Not at configure(): training (which
  never calls forward) reuses its large buffers from the heap, and is 30 % slower without.

The CLIs take their defaults from the environment: RCAN_JAX_CACHE=off|DIR (default ~/.cache/rcan-jax,
or $XDG_CACHE_HOME/rcan-jax), RCAN_MALLOC=default (leave malloc alone) and RCAN_MAX_ISA=avx2|avx512|
avx512_bf16 (the newest CPU instructions used: accel/platform/hardware.py).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import os
import sys

import jax

from . import hardware

DEFAULT = "default"


@dataclasses.dataclass
class _Settings:
    cache: str | None = None      # the persistent cache folder, once configured
    malloc: bool = False          # hand memory back after forwards
    threshold_fixed: bool = False


_settings = _Settings()


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rcan-jax")


def configure(cache: str | None = DEFAULT, malloc: bool = True) -> None:
    """cache: a folder, DEFAULT (~/.cache/rcan-jax) or None (no persistent cache); malloc: hand freed
    memory back to the OS after every forward (glibc)."""
    folder = default_cache_dir() if cache == DEFAULT else cache
    if folder:
        jax.config.update("jax_compilation_cache_dir", folder)
        # Cache every compile of the model: the defaults skip compiles under 1 s and small programs.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _settings.cache, _settings.malloc = folder or None, malloc


def configure_from_env(malloc: bool | None = None) -> None:
    """configure() with the CLIs' defaults, read from RCAN_JAX_CACHE and RCAN_MALLOC (malloc, when
    given, overrides the latter)."""
    setting = os.environ.get("RCAN_JAX_CACHE", "")
    cache = None if setting.lower() in ("off", "0", "false", "no") else (setting or DEFAULT)
    configure(cache, malloc=os.environ.get("RCAN_MALLOC", "") != "default" if malloc is None else malloc)
    try:
        cap_isa()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None   # a usage error, as the CLIs' own


def cap_isa() -> None:
    """Passes RCAN_MAX_ISA's cap to XLA (before its CPU backend starts) and to oneDNN and ATen, for a torch
    imported later by this process or its children (the bench's peer)."""
    level = hardware.max_isa()
    if not level:
        return
    _, xla, torch_settings = hardware.MAX_ISA[level]
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_cpu_max_isa" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_max_isa={xla}".strip()
    for name, value in torch_settings.items():
        os.environ.setdefault(name, value)


def cache_dir() -> str | None:
    """The configured persistent cache folder (None until configure() names one)."""
    return _settings.cache


def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()
M_MMAP_THRESHOLD = -3   # glibc's mallopt parameter


def before_forward() -> None:
    """Blocks of 1 MB and more get their own mappings, returned to the OS when freed (once per process)."""
    if not _settings.malloc or _settings.threshold_fixed:
        return
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(M_MMAP_THRESHOLD, 1 << 20)
    _settings.threshold_fixed = True


def after_forward() -> None:
    """Hand what the call freed (and, after a compile, the compiler's garbage) back to the OS: XLA's and
    YNNPACK's worker threads allocate from their own malloc arenas, which otherwise keep it."""
    if _settings.malloc:
        release_free_memory()


def release_free_memory() -> None:
    """Return the heap's free pages to the OS (glibc malloc_trim); a no-op on other C libraries."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
