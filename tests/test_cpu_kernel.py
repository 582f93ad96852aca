"""accel/cpu_kernel.py: the bfloat16 3×3 convolution kernel (an XLA FFI custom call built from C++).

The portable build (plain C++, float32 arithmetic) runs on any machine and checks the packing, the tiles,
the edges and the threads; the AVX512-BF16 build is what the model runs where the CPU has it, and both are
held to the same bound: one rounding to bfloat16 of float32 sums over bfloat16 inputs."""
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


@pytest.mark.parametrize("native", BUILDS, ids=lambda n: "avx512-bf16" if n else "portable")
@pytest.mark.parametrize("shape", [(1, 7, 13, 32, 48), (2, 9, 25, 64, 64), (1, 1, 1, 2, 16), (1, 30, 6, 16, 80)])
def test_kernel_matches_exact_convolution(native, shape):
    """Widths that leave partial tiles (13, 25 = 4·6 + 1, 6 over 24-pixel tiles), one pixel, a batch of
    two, and every output-channel split (48 = 32 + 16; 80 = 64 + 16): within one bfloat16 rounding of the
    exact result (2^-8 relative) plus float32 summation noise."""
    n, h, w, c, cout = shape
    rng = np.random.default_rng(sum(shape))
    x = jnp.asarray(rng.standard_normal((n, h, w, c)), jnp.bfloat16)
    k = jnp.asarray(rng.standard_normal((3, 3, c, cout)) * 0.1, jnp.bfloat16)
    b = jnp.asarray(rng.standard_normal(cout), jnp.float32)
    y = jax.jit(lambda x, k, b: cpu_kernel.conv3x3(x, k, b, native=native))(x, k, b)
    assert y.dtype == jnp.bfloat16 and y.shape == (n, h, w, cout)
    exact = exact_conv(x.astype(jnp.float32), k.astype(jnp.float32), b)
    err = np.abs(np.asarray(y, np.float64) - exact)
    assert np.all(err <= 2.0 ** -8 * np.abs(exact) + 1e-4 * np.abs(exact).max()), err.max()


def test_kernel_rejects_shapes_it_cannot_tile():
    x = jnp.zeros((1, 4, 4, 3), jnp.bfloat16)
    with pytest.raises(ValueError, match="even C and 16·k outputs"):
        cpu_kernel.conv3x3(x, jnp.zeros((3, 3, 3, 16)), native=False)
    with pytest.raises(ValueError, match="even C and 16·k outputs"):
        cpu_kernel.conv3x3(jnp.zeros((1, 4, 4, 8), jnp.bfloat16), jnp.zeros((3, 3, 8, 24)), native=False)


def test_kernel_path_in_the_model(monkeypatch):
    """conv="kernel" runs the body's square convolutions through the kernel (the build this CPU runs;
    the portable one elsewhere) and keeps the bfloat16 model as close to float32 as XLA's paths are
    (test_accel.py's bound for them)."""
    native = cpu_kernel.cpu_has_bf16_dot()
    if not native:   # a CPU without the instructions: the same path through the portable build
        monkeypatch.setattr(cpu_kernel, "available", lambda: True)
        real = cpu_kernel.conv3x3
        monkeypatch.setattr(cpu_kernel, "conv3x3", lambda x, k, b=None: real(x, k, b, native=False))
    assert "kernel" in autotune.paths(jnp.bfloat16) and "kernel" not in autotune.paths(jnp.float32)
    weights = init_weights(SMALL, 6)
    lr = np.random.default_rng(6).uniform(0, 255, (1, 12, 12, 3)).astype(np.float32)
    f32 = np.asarray(accel.forward(accel.model_from_weights(weights, SMALL), lr))
    model = accel.model_from_weights(weights, SMALL, dtype=jnp.bfloat16, conv="kernel")
    calls = []
    monkeypatch.setattr(cpu_kernel, "pack", lambda k, real=cpu_kernel.pack: calls.append(k.shape) or real(k))
    ours = np.asarray(accel.forward(model, lr))
    assert calls and all(s == (3, 3, 16, 16) for s in calls), calls
    err = np.abs(ours - f32)
    assert err.max() < 8 and err.mean() < 1.5, (err.max(), err.mean())
    with pytest.raises(ValueError, match="not offered for float32"):
        autotune.check_setting("kernel", jnp.float32)
