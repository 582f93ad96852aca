"""The bfloat16 3×3 convolution on the CPU's bfloat16 dot instructions: accel/kernels/conv3x3_bf16.cc, two
XLA FFI custom calls, compiled here with the system's C++ compiler on first use and registered with JAX.

Why a kernel of our own: XLA:CPU runs a bfloat16 convolution in float32 and reaches the bfloat16 dot
units (AVX512-BF16's vdpbf16ps, two products per float32 lane, on AMD Zen 4 and Intel Xeons since Cooper
Lake) only through dots, whose batched form at RCAN's 64 channels gains nothing on them
(accel/PERFORMANCE.md); oneDNN's bfloat16 convolution, which PyTorch calls, runs near their peak. Two
schemes, register-tiled for AVX-512, the rows shared out over XLA's own CPU threads:
- "direct": the plain 9-tap convolution (float32 sums rounded once: 1.7e-3 relative RMS error per conv);
- "winograd2": Winograd F(2×2, 3×3) with all three steps fused per block of tiles in cache, 2.25× fewer
  multiplications, bfloat16 GEMM operands (coefficients 0 and ±1, so 4e-3 relative per conv, like XLA's
  "winograd2" path; F(4×4)'s transforms would magnify bfloat16's rounding tenfold).

The shared library is cached by a hash of the source, the compiler flags and the jax version: in the
runtime's cache folder once runtime.configure() names one, else in a temporary folder for this process.
On a CPU without AVX512-BF16 the same source compiles to plain C++ loops (float32 arithmetic, slow): the
autotune never offers that build, the tests run it to check the layout and the edges on any machine.
"""
from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile

import jax
import jax.numpy as jnp

from . import hardware, runtime, winograd

SOURCE = os.path.join(os.path.dirname(__file__), "kernels", "conv3x3_bf16.cc")
# scheme -> (custom-call target, the library's handler symbol)
TARGETS = {"direct": ("rcan_conv3x3_bf16", "RcanConv3x3Bf16"),
           "winograd2": ("rcan_winograd2_bf16", "RcanWinograd2Bf16")}
# The instructions the fast build needs, as /proc/cpuinfo names them.
NEEDS = ("avx512f", "avx512bw", "avx512vl", "avx512_bf16")
NATIVE_FLAGS = ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512bf16", "-mfma")
BASE_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-w")


class Unavailable(RuntimeError):
    """No C++ compiler, or the build failed: the path is not offered."""


def cpu_has_bf16_dot() -> bool:
    return all(flag in hardware.cpu_flags() for flag in NEEDS)


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


@functools.cache
def _temporary_folder() -> str:
    folder = tempfile.mkdtemp(prefix="rcan-kernel-")
    # Removed at exit (a loaded library stays mapped): without a cache folder nothing is left behind.
    atexit.register(shutil.rmtree, folder, True)
    return folder


def build(native: bool = True) -> str:
    """Path of the compiled library (built now if not cached). native: with the AVX512-BF16 instructions
    (only a CPU that has them can run it); else the portable plain-C++ build."""
    compiler = _compiler()
    if compiler is None:
        raise Unavailable("no C++ compiler (c++, g++ or clang++; or $CXX) to build the bfloat16 kernel")
    flags = BASE_FLAGS + (NATIVE_FLAGS if native else ())
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read() + " ".join(flags).encode() + jax.__version__.encode()).hexdigest()[:16]
    folder = os.path.join(runtime.cache_dir(), "kernels") if runtime.cache_dir() else _temporary_folder()
    path = os.path.join(folder, f"conv3x3_bf16-{'native' if native else 'portable'}-{digest}.so")
    if os.path.exists(path):
        return path
    os.makedirs(folder, exist_ok=True)
    # Compiled beside its final name and renamed into place: another process never loads half a file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    cmd = [compiler, *flags, f"-I{jax.ffi.include_dir()}", SOURCE, "-o", tmp]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise Unavailable(f"building the bfloat16 kernel failed: {last}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


@functools.cache
def _register(native: bool) -> str:
    """Registers the build's handlers with JAX once per process; returns the target names' suffix."""
    library = ctypes.cdll.LoadLibrary(build(native))
    suffix = "" if native else "_portable"
    for name, symbol in TARGETS.values():
        jax.ffi.register_ffi_target(name + suffix, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
    return suffix


@functools.cache
def available() -> bool:
    """Whether the fast kernel can run here: a CPU with AVX512-BF16 and a compiler that builds it."""
    if not cpu_has_bf16_dot():
        return False
    try:
        _register(True)
    except (Unavailable, OSError):
        return False
    return True


def pack(kernel, scheme: str = "direct"):
    """HWIO [3, 3, C, Cout] -> bfloat16 with each output channel's input-channel pair side by side, as one
    32-bit lane of vdpbf16ps reads it: [3, 3, C/2, Cout, 2] (direct), or for winograd2 the Winograd-domain
    filter U = G g Gᵀ (in float32, then rounded) as [16, C/2, Cout, 2]."""
    _, _, c, cout = kernel.shape
    if scheme == "winograd2":
        U = winograd.filter_transform(kernel.astype(jnp.float32), winograd.G2)
        return U.reshape(16, c // 2, 2, cout).transpose(0, 1, 3, 2).astype(jnp.bfloat16)
    return kernel.reshape(3, 3, c // 2, 2, cout).transpose(0, 1, 2, 4, 3).astype(jnp.bfloat16)


def conv3x3(x, kernel, bias=None, scheme: str = "direct", native: bool = True):
    """SAME 3×3 convolution, stride 1, in bfloat16: x [N, H, W, C], HWIO kernel [3, 3, C, Cout] -> bfloat16
    [N, H, W, Cout]; float32 sums (bias included) rounded once. C even (a multiple of 16 for winograd2),
    Cout a multiple of 16."""
    n, h, w, c = x.shape
    cout = kernel.shape[3]
    if c % (16 if scheme == "winograd2" else 2) or cout % 16 or kernel.shape[:3] != (3, 3, c):
        raise ValueError(f"the bfloat16 kernel ({scheme}) takes a 3×3 kernel over C = 2·k (16·k for winograd2) "
                         f"and 16·k outputs; got {kernel.shape}")
    bias = jnp.zeros((cout,), jnp.float32) if bias is None else bias.astype(jnp.float32)
    target = TARGETS[scheme][0] + _register(native)
    call = jax.ffi.ffi_call(target, jax.ShapeDtypeStruct((n, h, w, cout), jnp.bfloat16))
    return call(x.astype(jnp.bfloat16), pack(kernel, scheme), bias)
