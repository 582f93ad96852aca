"""accel/cpu_kernel.py: the bfloat16 3×3 convolution kernels (XLA FFI custom calls built from C++).

The portable build (plain C++, float32 arithmetic) runs on any machine and checks the packing, the tiles,
the edges and the threads; the AVX512-BF16 build is what the model runs where the CPU has it, and both are
held to the same bounds: for the direct scheme one rounding to bfloat16 of float32 sums over the bfloat16
inputs; for Winograd F(2×2) also its bfloat16 GEMM operands (accel/winograd.py's "winograd2" bound)."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import accel
from accel import autotune, cpu_kernel
from reference import RCANConfig
from reference.weights import init_weights

SMALL = RCANConfig(scale=2, n_resgroups=2, n_resblocks=3, n_feats=16, reduction=4)
BUILDS = [False] + ([True] if cpu_kernel.cpu_has_bf16_dot() else [])
BUILD_ID = lambda native: "avx512-bf16" if native else "portable"   # noqa: E731


def exact_conv(x, k, b):
    """float64 SAME 3×3 convolution of what the kernel sees (the bfloat16-rounded inputs)."""
    x, k = np.asarray(x, np.float64), np.asarray(k, np.float64)
    n, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = np.zeros((n, h, w, k.shape[3])) + np.asarray(b, np.float64)
    for dy in range(3):
        for dx in range(3):
            y += np.einsum("nhwc,cd->nhwd", xp[:, dy:dy + h, dx:dx + w], k[dy, dx])
    return y


# Widths that leave partial register tiles and blocks (13, 25, 6; 27 = 2·12 + 3 tiles of Winograd's 2×2,
# odd heights), one pixel, a batch of two, and every output-channel split (48 = 32 + 16; 80 = 64 + 16).
SHAPES = [(1, 7, 13, 32, 48), (2, 9, 25, 64, 64), (1, 1, 1, 16, 16), (1, 30, 6, 16, 80), (1, 5, 54, 32, 64)]


@pytest.mark.parametrize("native", BUILDS, ids=BUILD_ID)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scheme", ["direct", "winograd2"])
def test_kernel_matches_exact_convolution(native, shape, scheme):
    """direct: within one bfloat16 rounding of the exact result (2^-8 relative) plus float32 summation
    noise. winograd2: its GEMM operands are rounded too, so the bound is on the whole output, relative to
    its largest value: RMS within 2.5× that of the direct scheme, as for XLA's F(2×2) path."""
    n, h, w, c, cout = shape
    rng = np.random.default_rng(sum(shape))
    x = jnp.asarray(rng.standard_normal((n, h, w, c)), jnp.bfloat16)
    k = jnp.asarray(rng.standard_normal((3, 3, c, cout)) * 0.1, jnp.bfloat16)
    b = jnp.asarray(rng.standard_normal(cout), jnp.float32)
    run = jax.jit(lambda x, k, b, s: cpu_kernel.conv3x3(x, k, b, s, native=native), static_argnums=3)
    y = run(x, k, b, scheme)
    assert y.dtype == jnp.bfloat16 and y.shape == (n, h, w, cout)
    exact = exact_conv(x.astype(jnp.float32), k.astype(jnp.float32), b)
    err = np.abs(np.asarray(y, np.float64) - exact)
    if scheme == "direct":
        assert np.all(err <= 2.0 ** -8 * np.abs(exact) + 1e-4 * np.abs(exact).max()), err.max()
    else:
        direct = np.abs(np.asarray(run(x, k, b, "direct"), np.float64) - exact)
        rms = lambda e: float(np.sqrt(np.mean(e ** 2)))   # noqa: E731
        assert rms(err) < 2.5 * rms(direct) + 1e-6 and err.max() < 0.05 * np.abs(exact).max(), (rms(err), rms(direct))


def test_kernel_rejects_shapes_it_cannot_tile():
    with pytest.raises(ValueError, match=r"takes a 3×3 kernel over C = 2·k \(16·k for winograd2\) and 16·k "):
        cpu_kernel.conv3x3(jnp.zeros((1, 4, 4, 3), jnp.bfloat16), jnp.zeros((3, 3, 3, 16)), native=False)
    with pytest.raises(ValueError, match="and 16·k outputs; got"):
        cpu_kernel.conv3x3(jnp.zeros((1, 4, 4, 8), jnp.bfloat16), jnp.zeros((3, 3, 8, 24)), native=False)
    with pytest.raises(ValueError, match="winograd2"):
        cpu_kernel.conv3x3(jnp.zeros((1, 4, 4, 8), jnp.bfloat16), jnp.zeros((3, 3, 8, 16)), None, "winograd2",
                           native=False)


@pytest.mark.parametrize("path", ["kernel-direct", "kernel-winograd2"])
def test_kernel_paths_in_the_model(monkeypatch, path):
    """conv="kernel-…" runs the body's square convolutions through the kernel (the build this CPU runs;
    the portable one elsewhere) and keeps the bfloat16 model as close to float32 as XLA's paths are
    (test_accel.py's bound for them)."""
    native = cpu_kernel.cpu_has_bf16_dot()
    real = cpu_kernel.conv3x3
    calls = []

    def counted(x, k, b=None, scheme="direct", native=native):
        calls.append((k.shape, scheme))
        return real(x, k, b, scheme, native=native)
    if not native:   # a CPU without the instructions: the same path through the portable build
        monkeypatch.setattr(cpu_kernel, "available", lambda: True)
    monkeypatch.setattr(cpu_kernel, "conv3x3", counted)
    assert path in autotune.paths(jnp.bfloat16) and path not in autotune.paths(jnp.float32)
    weights = init_weights(SMALL, 6)
    lr = np.random.default_rng(6).uniform(0, 255, (1, 12, 12, 3)).astype(np.float32)
    f32 = np.asarray(accel.forward(accel.model_from_weights(weights, SMALL), lr))
    ours = np.asarray(accel.forward(accel.model_from_weights(weights, SMALL, dtype=jnp.bfloat16, conv=path), lr))
    scheme = path.split("-")[1]
    assert calls and all(c == ((3, 3, 16, 16), scheme) for c in calls), calls
    err = np.abs(ours - f32)
    assert err.max() < 8 and err.mean() < 1.5, (err.max(), err.mean())
    with pytest.raises(ValueError, match="not offered for float32"):
        autotune.check_setting(path, jnp.float32)


def test_build_without_cache_folder_leaves_nothing_behind(tmp_path):
    """Without runtime.configure() the library is built in a temporary folder, removed when the process ends."""
    probe = "from accel import cpu_kernel; print(cpu_kernel.build(native=False))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       env=dict(os.environ, TMPDIR=str(tmp_path)))
    built = r.stdout.strip()
    assert r.returncode == 0 and built.startswith(str(tmp_path)) and built.endswith(".so"), r.stderr[-2000:]
    assert not os.path.exists(os.path.dirname(built)) and os.listdir(tmp_path) == []
