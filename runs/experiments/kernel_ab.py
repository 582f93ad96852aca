"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): two versions of the float32 kernel (accel/conv/kernels/winograd4_f32.cc)
in one process, run in turns on the same inputs, so that a slow stretch of the shared machine hits both:
a scanned chain of 10 convs 64→64 (each followed by a ReLU), ms per conv (min / median of 9), and the
largest difference between the two chains' outputs.

Run, from the repository root (the other version from git, e.g. the commit before a change):
  git show REV:accel/conv/kernels/winograd4_f32.cc > /tmp/before.cc
  PYTHONPATH=.:runs/experiments python runs/experiments/kernel_ab.py /tmp/before.cc BUILD SIZE ...
BUILD: avx512, avx2 or portable (with avx2 on an AVX-512 CPU, XLA_FLAGS=--xla_cpu_max_isa=AVX2 holds XLA's
own code to the same instructions).
"""
import ctypes
import os
import shutil
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from accel.conv import cpu_kernel
from accel.conv.kernels import build as kernels_build
from interleaved import compare

N, C = 10, 64


def register(before: str, build: str) -> dict:
    """The target names of this checkout's kernel (as installed) and of the other version, each in the given
    build."""
    # The other version is compiled as a library of its own, beside the headers it includes; the digest that
    # checks this checkout's build is taken first, so that the copy does not enter it.
    cpu_kernel.sources_digest()
    copy = os.path.join(kernels_build.SOURCES, "zz_kernel_ab_before.cc")
    shutil.copy(before, copy)
    try:
        kernels_build.LIBRARIES["f32-before"] = kernels_build.Library(
            os.path.basename(copy), kernels_build.LIBRARIES["f32"].builds,
            {"winograd4": {"float32": ("rcan_winograd4_f32_before", "RcanWinograd4F32")}})
        path = kernels_build.compile_one("f32-before", build, tempfile.mkdtemp(prefix="kernel-ab-"))
    finally:
        os.remove(copy)
    handle = ctypes.CDLL(path)
    jax.ffi.register_ffi_target("rcan_winograd4_f32_before", jax.ffi.pycapsule(handle.RcanWinograd4F32),
                                platform="cpu")
    return {"this": "rcan_winograd4_f32" + cpu_kernel._register_variant("f32", build),
            "before": "rcan_winograd4_f32_before"}


def chain(target: str, bias):
    def conv(x, w):
        out = (jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct((1, 1, C), jnp.float32))
        return jax.ffi.ffi_call(target, out)(x, cpu_kernel.pack(w, "winograd4"), bias, pooled=np.int32(0))[0]
    return jax.jit(lambda x, ws: lax.scan(lambda h, w: (jax.nn.relu(conv(h, w)), None), x, ws)[0])


def main(before: str, build: str, sizes: list[int]) -> None:
    rng = np.random.default_rng(0)
    ws = jnp.asarray(rng.standard_normal((N, 3, 3, C, C)) * 0.05, jnp.float32)
    bias = jnp.asarray(rng.standard_normal(C) * 0.1, jnp.float32)
    fs = {name: chain(target, bias) for name, target in register(before, build).items()}
    for size in sizes:
        x = jnp.asarray(rng.standard_normal((1, size, size, C)), jnp.float32)
        this, other = (np.asarray(f(x, ws)) for f in fs.values())
        times = compare(fs, (x, ws), 9, N)
        print(f"{build} {size}×{size}  this {times['this']} ms  before {times['before']} ms  "
              f"max difference {float(np.abs(this - other).max()):.1e}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3:]] or [64, 128, 256])
