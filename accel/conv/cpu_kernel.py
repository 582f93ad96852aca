"""The project's CPU convolution kernels: C++ in accel/conv/kernels/, XLA FFI custom calls built at install
(accel/conv/kernels/build.py, run by setup.py) and loaded and registered with JAX here. Two libraries:

bfloat16 on the CPU's bfloat16 dot instructions (conv3x3_bf16.cc). XLA:CPU runs a bfloat16 convolution in
float32 and reaches the bfloat16 dot units (AVX512-BF16's vdpbf16ps, two products per float32 lane, on AMD
Zen 4 and Intel Xeons since Cooper Lake) only through dots, whose batched form at RCAN's 64 channels gains
nothing on them (accel/PERFORMANCE.md); oneDNN's bfloat16 convolution, which PyTorch calls, runs near
their peak. Two schemes, register-tiled for AVX-512, the rows shared out over XLA's own CPU threads:
- "direct": the plain 9-tap convolution (float32 sums rounded once: 1.7e-3 relative RMS error per conv);
  its "amx" build (Intel Xeons since Sapphire Rapids) runs it on AMX's tile units where C and Cout are
  multiples of 32, 16×16×32 products per instruction (kernels/amx.h); "amx-emulated", the same tile code
  on plain C++ tiles, is for the tests on any CPU;
- "winograd2": Winograd F(2×2, 3×3) with all three steps fused per block of tiles in cache, 2.25× fewer
  multiplications, bfloat16 GEMM operands (coefficients 0 and ±1, so 4e-3 relative per conv, like XLA's
  "winograd2" path; F(4×4)'s transforms would magnify bfloat16's rounding tenfold).

float32 on AVX-512 (or AVX2) FMAs (winograd4_f32.cc): "winograd4", accel/conv/winograd.py's F(4×4, 3×3) (4× fewer
multiplications than the direct convolution, the same ≈ 2e-6 relative error per conv) with the input
transform, the 36 GEMMs and the output transform fused per block of 24 tiles, so the Winograd-domain data
(2.25× the activations, each way) stays in the core's caches instead of going through memory between
XLA's separate passes. It serves bfloat16 models too, as XLA runs their convolutions on a CPU: float32
arithmetic, the bfloat16 input widened as it is read and the output rounded once as it is written.

Asked for, the Winograd kernels also sum their output per channel as they write it (channel attention's
pooling, conv3x3(pooled=True)), one row of sums per work item, which XLA adds up.

Every build is made at install, whatever the CPU of the machine that builds: the one a process loads is
chosen here by the CPU's flags. No compiler runs at run time; a library is loaded only if the manifest
beside it names the sources it was built from (a checkout whose C++ changed says to rebuild) and its
SHA-256 (a damaged file is named in one warning line and not loaded). The "portable" build, plain C++
loops (float32 arithmetic, slow), runs on any CPU: the autotune never offers it (nor an emulated one), the
tests run it to check the layout and the edges on any machine.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from accel.platform import hardware

from . import winograd
from .kernels import build as kernels_build
from .kernels.build import LIBRARIES, SOURCES  # (the table lives with the build)

# scheme -> the library that has it
LIBRARY = {scheme: name for name, lib in LIBRARIES.items() for scheme in lib.targets}
WINOGRAD4_BLOCK = 24   # tiles per work item of winograd4_f32.cc (kBlock): one row of its sums each
# A folder built by `python -m accel.conv.kernels.build --out DIR`, used instead of the package's own
FOLDER_ENV = "RCAN_KERNELS"
REBUILD = "reinstall, or run `python -m accel.conv.kernels.build`"


class Unavailable(RuntimeError):
    """The kernels were not built at install (or not this build), or the built file is damaged: the path is
    not offered."""


def native_builds(library: str) -> list[str]:
    """The library's native builds this CPU can run, fastest first."""
    return [name for name, (needs, _) in LIBRARIES[library].builds.items()
            if needs is not None and all(flag in hardware.cpu_flags() for flag in needs)]


def emulated_builds(library: str) -> list[str]:
    """The library's builds that emulate instructions in plain C++ (any CPU; for the tests, never chosen)."""
    return [name for name, (needs, _) in LIBRARIES[library].builds.items() if needs is None]


def cpu_has(library: str = "bf16") -> bool:
    """Whether this CPU can run one of the library's native builds."""
    return bool(native_builds(library))


def needs(scheme: str) -> str:
    """The instructions the scheme's native builds need, for a message: "avx512f fma, or avx2 fma" (a build
    that needs more than another, such as AMX's, is left out)."""
    sets = [set(flags) for flags, _ in LIBRARIES[LIBRARY[scheme]].builds.values() if flags]
    least = [flags for flags, _ in LIBRARIES[LIBRARY[scheme]].builds.values()
             if flags and not any(other < set(flags) for other in sets)]
    return ", or ".join(" ".join(flags) for flags in least)


def _variant(native, library: str) -> str:
    """native: True (the fastest build this CPU runs), False or "portable" (plain C++), or a build's name."""
    if native is False or native == "portable":
        return "portable"
    if native is True:
        builds = native_builds(library)
        if not builds:
            raise Unavailable(f"this CPU has none of the instructions of {LIBRARIES[library].source}'s builds")
        return builds[0]
    if native not in LIBRARIES[library].builds:
        raise ValueError(f"{LIBRARIES[library].source} has no build {native!r}")
    return native


def folder() -> str:
    """Where the built libraries are: $RCAN_KERNELS, else the package's own (built at install)."""
    return os.environ.get(FOLDER_ENV) or kernels_build.LIB


@functools.cache
def sources_digest() -> str:
    """A digest of the kernels' sources and headers (accel/conv/kernels/build.py), read once."""
    return kernels_build.sources_digest()


@functools.cache
def manifest(where: str) -> dict:
    """The build's manifest in that folder (accel/conv/kernels/build.py), checked against these sources."""
    path = os.path.join(where, kernels_build.MANIFEST)
    try:
        with open(path) as f:
            found = json.load(f)
    except FileNotFoundError:
        raise Unavailable(f"the CPU kernels were not built at install (no {path}): reinstall with a C++ compiler "
                          "(pip install .), or run `python -m accel.conv.kernels.build` in a checkout") from None
    except (OSError, ValueError) as e:
        raise Unavailable(f"{path} is not readable ({type(e).__name__}): reinstall, or run "
                          "`python -m accel.conv.kernels.build`") from None
    if not isinstance(found, dict) or not isinstance(found.get("builds"), dict):
        raise Unavailable(f"{path} is not a kernel build's manifest: {REBUILD}")
    if found.get("sources") != sources_digest():
        raise Unavailable(f"the CPU kernels in {where} were built from other sources than {SOURCES}: rebuild them "
                          "(`python -m accel.conv.kernels.build`, or reinstall)")
    return found


def build(native: bool | str = True, library: str = "bf16") -> str:
    """Path of the built library (no compiler runs here: the kernels are built at install). native: True for
    the fastest build this CPU runs, a build's name, or False for plain C++."""
    variant = _variant(native, library)
    where = folder()
    found = manifest(where)
    key = f"{library}/{variant}"
    entry = found["builds"].get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        why = found.get("refused", {}).get(key) if isinstance(found.get("refused"), dict) else None
        raise Unavailable(f"{kernels_build.filename(library, variant)} was not built at install"
                          + (f" ({why})" if why else ""))
    path = os.path.join(where, os.path.basename(entry["file"]))
    try:
        intact = kernels_build.file_digest(path) == entry.get("sha256")
    except OSError as e:
        raise Unavailable(f"{path}: {e.strerror or e}; {REBUILD}") from None
    if not intact:   # a file cut short (full disk, killed copy) would crash the process that maps it: SIGBUS
        message = f"{path}: damaged (not the file its build wrote); {REBUILD}"
        if (where, library) not in _WARNED:   # said once, though every build and path of it is then left out
            _WARNED.add((where, library))
            print(f"warning: {message}", file=sys.stderr)
        raise Unavailable(message)
    return path


_WARNED: set = set()


def _register(library: str, native) -> str:
    """Registers the build's handlers with JAX once per process; returns the target names' suffix."""
    return _register_variant(library, _fastest(library) if native is True else _variant(native, library))


@functools.cache
def _fastest(library: str) -> str:
    """The fastest native build this CPU runs that was built at install (an older compiler may not know the
    newest instructions' flags: the next build then)."""
    failure = Unavailable(f"this CPU has none of the instructions of {LIBRARIES[library].source}'s builds")
    for variant in native_builds(library):
        try:
            _register_variant(library, variant)
            return variant
        except (Unavailable, OSError) as e:
            failure = e
    raise failure


_HANDLES: dict = {}   # (library, build) -> the loaded shared library


@functools.cache
def _register_variant(library: str, variant: str) -> str:
    path = build(variant, library)
    try:
        handle = ctypes.cdll.LoadLibrary(path)
        functions = [(name, getattr(handle, symbol))
                     for by_dtype in LIBRARIES[library].targets.values() for name, symbol in by_dtype.values()]
    except (OSError, AttributeError) as e:   # test-loaded when built, and its digest checked: not expected
        raise Unavailable(f"{path} does not load ({e}); {REBUILD}") from None
    _HANDLES[library, variant] = handle
    suffix = "_" + variant
    for name, function in functions:
        jax.ffi.register_ffi_target(name + suffix, jax.ffi.pycapsule(function), platform="cpu")
    return suffix


def _plain_function(native, name: str, restype):
    """The build's plain C function `name` (the bfloat16 library's; see build()), and the build's name."""
    variant = _register("bf16", native)[1:]   # the suffix is "_" + the build's name
    function = getattr(_HANDLES["bf16", variant], name)
    function.restype = restype
    return function, variant


def amx_spans(native: bool | str = True) -> int:
    """How many row spans the bfloat16 library's build (see build()) has run on AMX tiles in this process:
    0 for a build without them, or on a CPU where Linux did not grant the tile state."""
    return _plain_function(native, "RcanAmxSpans", ctypes.c_int64)[0]()


def amx_refusal(native: bool | str = True) -> str | None:
    """Why the bfloat16 library's build does not run on AMX tiles in this process: None if it does; else
    "no tiles in the … build", or Linux's refusal of the tile state, e.g. "ENOTSUP (Operation not
    supported)" on a CPU without AMX, EINVAL on a kernel before 5.16 (the build then runs its vdpbf16ps
    code)."""
    ask, variant = _plain_function(native, "RcanAmxRefusal", ctypes.c_int)
    error = ask()
    if error < 0:
        return f"no tiles in the {variant} build"
    return f"{errno.errorcode.get(error, error)} ({os.strerror(error)})" if error else None


def amx_status() -> str | None:
    """On a CPU that lists AMX's tiles, whether the bfloat16 kernels use them in this process ("AMX tiles in
    use", or why not: a bench on such a CPU says so); None on other CPUs."""
    if not hardware.AMX_FLAGS <= hardware.cpu_flags():
        return None
    try:
        refusal = amx_refusal(True)
    except (Unavailable, OSError) as e:
        refusal = str(e)
    return "AMX tiles in use" if refusal is None else f"AMX tiles unused: {refusal}"


@functools.cache
def unavailable(scheme: str = "direct") -> str | None:
    """Why the scheme's fast kernel cannot run here (None when it can): the CPU, or the install's build."""
    library = LIBRARY[scheme]
    if not cpu_has(library):
        return f"it needs a CPU with {needs(scheme)} (in /proc/cpuinfo)"
    try:
        _register(library, True)
    except (Unavailable, OSError) as e:
        return str(e)
    return None


def available(scheme: str = "direct") -> bool:
    """Whether the scheme's fast kernel can run here: a CPU with its instructions and its build installed."""
    return unavailable(scheme) is None


def dtypes(scheme: str) -> list:
    """The activation dtypes the scheme's kernel takes and gives (the models it serves)."""
    return [jnp.dtype(name) for name in LIBRARIES[LIBRARY[scheme]].targets[scheme]]


def serves(scheme: str, model_dtype) -> bool:
    return jnp.dtype(model_dtype) in dtypes(scheme)


def fits(scheme: str, channels: int, out_channels: int) -> bool:
    """Whether the scheme's kernel tiles these channel counts (16 output channels per vector; input channels
    in pairs for direct, in vectors of 16 for the Winograd schemes)."""
    return channels % (2 if scheme == "direct" else 16) == 0 and out_channels % 16 == 0


def pack(kernel, scheme: str = "direct"):
    """HWIO [3, 3, C, Cout] -> the kernel's weights. bfloat16: each output channel's input-channel pair side
    by side, as one 32-bit lane of vdpbf16ps reads it: [3, 3, C/2, Cout, 2] (direct), or for winograd2 the
    Winograd-domain filter U = G g Gᵀ (in float32, then rounded) as [16, C/2, Cout, 2]. winograd4: U in
    float32 as [36, C, Cout]."""
    _, _, c, cout = kernel.shape
    if scheme == "winograd4":
        return winograd.filter_transform(kernel.astype(jnp.float32), winograd.G)
    if scheme == "winograd2":
        U = winograd.filter_transform(kernel.astype(jnp.float32), winograd.G2)
        return U.reshape(16, c // 2, 2, cout).transpose(0, 1, 3, 2).astype(jnp.bfloat16)
    return kernel.reshape(3, 3, c // 2, 2, cout).transpose(0, 1, 2, 4, 3).astype(jnp.bfloat16)


def conv3x3(x, kernel, bias=None, scheme: str = "direct", native: bool | str = True, pooled: bool = False):
    """SAME 3×3 convolution, stride 1: x [N, H, W, C], HWIO kernel [3, 3, C, Cout] -> [N, H, W, Cout] in x's
    dtype, one the scheme serves (bfloat16 for direct and winograd2: float32 sums, bias included, rounded
    once; float32 or bfloat16 for winograd4, float32 arithmetic either way). C even for direct, a multiple
    of 16 for the Winograd schemes; Cout a multiple of 16. native: which build (see build()).
    pooled: return (y, y's mean over H and W in float32 [N, Cout]); the Winograd kernels sum y as they write
    it, direct leaves the mean to XLA."""
    n, h, w, c = x.shape
    cout = kernel.shape[3]
    multiple = 2 if scheme == "direct" else 16
    if not fits(scheme, c, cout) or kernel.shape[:3] != (3, 3, c):
        raise ValueError(f"the {scheme} kernel takes a 3×3 kernel over C = {multiple}·k inputs and 16·k outputs; "
                         f"got {kernel.shape}")
    if not serves(scheme, x.dtype):
        raise ValueError(f"the {scheme} kernel takes {' or '.join(d.name for d in dtypes(scheme))}, not {x.dtype}")
    bias = jnp.zeros((cout,), jnp.float32) if bias is None else bias.astype(jnp.float32)
    target = LIBRARIES[LIBRARY[scheme]].targets[scheme][x.dtype.name][0] + _register(LIBRARY[scheme], native)
    y = jax.ShapeDtypeStruct((n, h, w, cout), x.dtype)
    if scheme == "direct":
        return winograd.with_pooling(jax.ffi.ffi_call(target, y)(x, pack(kernel, scheme), bias), pooled)
    # Rows of sums: one per work item (winograd4: a block of tiles of a tile row; winograd2: a tile row).
    ceil = lambda a, b: -(-a // b)   # noqa: E731
    items = ceil(h, 4) * ceil(ceil(w, 4), WINOGRAD4_BLOCK) if scheme == "winograd4" else ceil(h, 2)
    sums = jax.ShapeDtypeStruct((n, items if pooled else 1, cout), jnp.float32)
    y, sums = jax.ffi.ffi_call(target, (y, sums))(x, pack(kernel, scheme), bias, pooled=np.int32(pooled))
    return (y, jnp.sum(sums, axis=1) / (h * w)) if pooled else y
