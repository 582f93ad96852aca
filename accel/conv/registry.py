"""The convolution paths: one record per way accel can run RCAN's 3×3 convolutions, and the dispatch to it.

Words, as the rest of accel uses them:

- **path**: one way to run the convolutions, named as `--conv` names it (`xla`, `winograd-ynn`,
  `kernel-winograd4`, …; `auto` lets accel/conv/autotune.py time the candidates and pick one per size class).
- **algorithm** of a path: `direct` (XLA's own convolution), `f4` / `f2` (Winograd F(4×4, 3×3) / F(2×2, 3×3)
  written in XLA, accel/conv/winograd.py), or `kernel` (a C++ custom call of this project).
- **options**: the XLA compiler options its compilation takes (YNNPACK's dot fusions, NCHW on a GPU).
- **kernel**: for algorithm `kernel`, the C++ kernel's name as accel/conv/kernels/build.py's LIBRARIES list it
  (`direct`, `winograd2`, `winograd4`); its library has one **build** per instruction set (avx512, amx, …),
  chosen at load time by accel/conv/cpu_kernel.py. The dtypes a kernel path serves are its library's.
- **backends** and **dtypes**: where a path exists and the model dtypes it is offered for.

A model traced under `enabled(path)` sends each convolution that `applies()` to `square_conv()`, which runs
the path's algorithm; everything else stays XLA's convolution. The path's options go to the compilation
(autotune.jit).

Adding a path:
1. a record in PATHS below (for a new combination of XLA options and an existing algorithm, that is all:
   the autotune times it, `--conv` accepts it, the tests run every record);
2. a new Winograd algorithm in XLA: its matrices in accel/conv/winograd.py's SCHEMES too (2 files);
3. a new C++ kernel: its source in accel/conv/kernels/, its target in accel/conv/kernels/build.py's
   LIBRARIES, and its weight layout and work items in accel/conv/cpu_kernel.py (pack, conv3x3) (4 files),
   plus its own tests in tests/test_cpu_kernel.py's list of kernels.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses

import jax.numpy as jnp

from . import cpu_kernel, winograd
from .kernels.build import LIBRARIES

YNN_DOT = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}
EVERYWHERE = ("cpu", "gpu", "tpu")
BOTH = ("float32", "bfloat16")
# kernel -> the activation dtypes its library serves
KERNEL_DTYPES = {kernel: tuple(by_dtype) for lib in LIBRARIES.values() for kernel, by_dtype in lib.targets.items()}


@dataclasses.dataclass(frozen=True)
class ConvPath:
    name: str
    algorithm: str                      # "direct", "f4", "f2" (accel/conv/winograd.py) or "kernel"
    options: dict = dataclasses.field(default_factory=dict)   # XLA compiler options of its compilation
    backends: tuple = EVERYWHERE
    dtypes: tuple = BOTH                # model dtypes it is offered for
    kernel: str | None = None           # the C++ kernel, for algorithm "kernel"


def _kernel_path(name: str, kernel: str) -> ConvPath:
    return ConvPath(name, "kernel", backends=("cpu",), dtypes=KERNEL_DTYPES[kernel], kernel=kernel)


PATHS = {p.name: p for p in (
    ConvPath("xla", "direct"),
    # cuDNN's convolutions in NCHW (XLA:GPU otherwise picks the layout per dtype; torch's fastest float32
    # layout on an H100 is NCHW).
    ConvPath("xla-nchw", "direct", {"xla_gpu_force_conv_nchw": True}, backends=("gpu",)),
    ConvPath("ynn", "direct", YNN_DOT, backends=("cpu",)),
    ConvPath("winograd", "f4"),
    # YNNPACK's dot fusion takes in the bias add after the 36 GEMMs
    ConvPath("winograd-ynn", "f4", YNN_DOT, backends=("cpu",)),
    # F(2×2)'s coefficients are at most 1: its GEMMs may take bfloat16 operands (F(4×4)'s may not)
    ConvPath("winograd2", "f2", dtypes=("bfloat16",)),
    _kernel_path("kernel-direct", "direct"),
    _kernel_path("kernel-winograd2", "winograd2"),
    _kernel_path("kernel-winograd4", "winograd4"),
)}
KERNEL_PATHS = tuple(name for name, p in PATHS.items() if p.algorithm == "kernel")


def runs_on(name: str, backend: str) -> bool:
    """Whether this path exists on this jax backend ("cpu", "gpu", "tpu")."""
    return backend in PATHS[name].backends


def offered(name: str, dtype, backend: str, channels: int | None = None) -> bool:
    """Whether the path is worth timing for a model of this dtype here: it exists on the backend, serves the
    dtype and, for a kernel, this CPU runs its build (and, given the channels, its register tiles fit them)."""
    p = PATHS[name]
    if not runs_on(name, backend) or jnp.dtype(dtype).name not in p.dtypes:
        return False
    if p.kernel is None:
        return True
    return (channels is None or cpu_kernel.fits(p.kernel, channels, channels)) and cpu_kernel.available(p.kernel)


# --- dispatch while a model is traced ------------------------------------------------------------------

_ACTIVE: contextvars.ContextVar[ConvPath | None] = contextvars.ContextVar("rcan_conv_path", default=None)


@contextlib.contextmanager
def enabled(path: str | ConvPath | None = "winograd"):
    """Within this block, models traced run the convolutions that applies() through square_conv() on this
    path (a name of PATHS, or a record; None or a "direct" path: XLA's convolution throughout)."""
    token = _ACTIVE.set(PATHS[path] if isinstance(path, str) else path)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def applies(kernel_shape) -> bool:
    """Whether a SAME, stride-1 conv with this HWIO kernel leaves XLA's convolution in the current trace.

    The Winograd algorithms take the square convolutions of the body (≈ 99 % of the official model's work):
    the head and tail have 3 channels on one side (a GEMM that thin gains nothing) and the upsampler's 4×
    wider output would quadruple the Winograd-domain memory. The C++ kernels keep that data in cache, so they
    take the upsampler too wherever its channels tile.
    """
    p = _ACTIVE.get()
    if p is None or p.algorithm == "direct" or tuple(kernel_shape[:2]) != (3, 3):
        return False
    if p.kernel is not None:
        return cpu_kernel.fits(p.kernel, kernel_shape[2], kernel_shape[3])
    return kernel_shape[2] == kernel_shape[3]


def square_conv(x, kernel, bias=None, pooled: bool = False):
    """A convolution that applies(), on the enabled path. pooled: return (y, its mean over H and W) — channel
    attention's pooling, which the C++ Winograd kernels sum as they write y."""
    p = _ACTIVE.get()
    if p.kernel is not None:
        return cpu_kernel.conv3x3(x, kernel, bias, p.kernel, pooled=pooled)
    return winograd.with_pooling(winograd.conv3x3(x, kernel, bias, scheme=p.algorithm), pooled)
