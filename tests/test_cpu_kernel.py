"""accel/conv/cpu_kernel.py: the 3×3 convolution kernels (XLA FFI custom calls built from C++), bfloat16 and float32.

The portable builds (plain C++, float32 arithmetic) run on any machine and check the packing, the tiles,
the edges and the threads; the native builds (AVX512-BF16; AVX-512) are what the model runs where the CPU
has them, and both are held to the same bounds: for the bfloat16 direct scheme one rounding to bfloat16 of
float32 sums over the bfloat16 inputs; for Winograd F(2×2) also its bfloat16 GEMM operands (accel/conv/winograd.py's
"winograd2" bound); for the float32 F(4×4) kernel the bound of accel/conv/winograd.py's F(4×4) in float32, plus one
rounding to bfloat16 where it serves a bfloat16 model."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import accel
from accel.conv import autotune, cpu_kernel
from accel.platform import hardware
from reference import RCANConfig
from reference.weights import init_weights

SMALL = RCANConfig(scale=2, n_resgroups=2, n_resblocks=3, n_feats=16, reduction=4)
SCHEMES = ["direct", "winograd2", "winograd4"]
# Every scheme for every activation dtype it serves, in its portable build and each native build whose
# instructions this CPU has (a CPU with AVX-512 runs the float32 kernel's AVX2 build too); the direct scheme
# also in the emulated builds (AMX's tile code on plain C++ tiles).
BUILDS = [(scheme, native, dtype.name) for scheme in SCHEMES for dtype in cpu_kernel.dtypes(scheme)
          for native in [False, *(cpu_kernel.emulated_builds(cpu_kernel.LIBRARY[scheme]) if scheme == "direct" else []),
                         *cpu_kernel.native_builds(cpu_kernel.LIBRARY[scheme])]]
BUILD_ID = lambda b: f"{b[0]}-{b[1] or 'portable'}-{b[2]}"   # noqa: E731
# The model paths for each dtype their kernel serves.
PATHS = [(path, dtype.name) for path in ["kernel-direct", "kernel-winograd2", "kernel-winograd4"]
         for dtype in cpu_kernel.dtypes(path.split("-")[1])]


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


# Widths that leave partial register tiles and blocks (13, 25, 6, 43; 27 = 2·12 + 3 tiles of Winograd's 2×2;
# F(4×4)'s last tiles of a row in each narrower register tile: 4, 7, 11 = 6 + 5 and 14 = 12 + 2 tiles;
# 101 = 24 + 2 tiles; odd heights), one pixel, a batch of two, and every output-channel split
# (48 = 32 + 16; 80 = 64 + 16).
SHAPES = [(1, 7, 13, 32, 48), (2, 9, 25, 64, 64), (1, 1, 1, 16, 16), (1, 30, 6, 16, 80), (1, 5, 54, 32, 64),
          (1, 6, 101, 16, 32), (1, 3, 43, 16, 16)]


@pytest.mark.parametrize("build", BUILDS, ids=BUILD_ID)
@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_matches_exact_convolution(build, shape):
    """direct: within one bfloat16 rounding of the exact result (2^-8 relative) plus float32 summation
    noise. winograd2: its GEMM operands are rounded too, so the bound is on the whole output, relative to
    its largest value: RMS within 2.5× that of the direct scheme, as for XLA's F(2×2) path. winograd4
    (float32): within 2e-5 of the largest output, as accel/conv/winograd.py's F(4×4) (tests/test_accel.py); with
    bfloat16 activations, that plus one rounding to bfloat16."""
    scheme, native, dtype = build
    n, h, w, c, cout = shape
    dtype = jnp.dtype(dtype)
    rng = np.random.default_rng(sum(shape))
    x = jnp.asarray(rng.standard_normal((n, h, w, c)), dtype)
    k = jnp.asarray(rng.standard_normal((3, 3, c, cout)) * 0.1, dtype)
    b = jnp.asarray(rng.standard_normal(cout), jnp.float32)
    run = jax.jit(lambda x, k, b, s: cpu_kernel.conv3x3(x, k, b, s, native=native), static_argnums=3)
    y = run(x, k, b, scheme)
    assert y.dtype == dtype and y.shape == (n, h, w, cout)
    exact = exact_conv(x.astype(jnp.float32), k.astype(jnp.float32), b)
    err = np.abs(np.asarray(y, np.float64) - exact)
    if scheme == "winograd4":
        rounding = 2.0 ** -8 * np.abs(exact) if dtype == jnp.bfloat16 else 0
        assert np.all(err <= rounding + 2e-5 * np.abs(exact).max()), err.max() / np.abs(exact).max()
    elif scheme == "direct":
        assert np.all(err <= 2.0 ** -8 * np.abs(exact) + 1e-4 * np.abs(exact).max()), err.max()
    else:
        direct = np.abs(np.asarray(run(x, k, b, "direct"), np.float64) - exact)
        rms = lambda e: float(np.sqrt(np.mean(e ** 2)))   # noqa: E731
        assert rms(err) < 2.5 * rms(direct) + 1e-6 and err.max() < 0.05 * np.abs(exact).max(), (rms(err), rms(direct))


@pytest.mark.parametrize("build", BUILDS, ids=BUILD_ID)
@pytest.mark.parametrize("shape", [(2, 9, 25, 64, 64), (1, 6, 101, 16, 32)])
def test_kernel_pooled_output(build, shape):
    """pooled=True gives the same output and its mean over H and W: float32 sums of what was stored
    (bfloat16 values widened), within 1e-6 of the largest value, across the images of a batch and the
    blocks of tiles of a row (101 pixels = 26 tiles: a block of 24 and one of 2)."""
    scheme, native, dtype = build
    n, h, w, c, cout = shape
    rng = np.random.default_rng(sum(shape) + 1)
    x = jnp.asarray(rng.standard_normal((n, h, w, c)), dtype)
    k = jnp.asarray(rng.standard_normal((3, 3, c, cout)) * 0.1, dtype)
    b = jnp.asarray(rng.standard_normal(cout), jnp.float32)
    run = jax.jit(lambda x, k, b, pooled: cpu_kernel.conv3x3(x, k, b, scheme, native, pooled), static_argnums=3)
    plain = np.asarray(run(x, k, b, False), np.float64)
    y, mean = run(x, k, b, True)
    assert np.array_equal(np.asarray(y, np.float64), plain)
    assert mean.dtype == jnp.float32 and mean.shape == (n, cout)
    assert np.abs(np.asarray(mean) - plain.mean(axis=(1, 2))).max() < 1e-6 * np.abs(plain).max()


# The AMX builds: emulated on any CPU; the real one wherever its other instructions (AVX512-BF16) are, since
# it asks Linux for the tiles and runs its vdpbf16ps code where they are refused, as on a Zen 4.
AMX_BUILDS = cpu_kernel.emulated_builds("bf16") + [
    b for b, (needs, _) in cpu_kernel.LIBRARIES["bf16"].builds.items()
    if needs and hardware.AMX_FLAGS <= set(needs) and set(needs) - hardware.AMX_FLAGS <= hardware.cpu_flags()]


@pytest.mark.parametrize("native", AMX_BUILDS)
def test_amx_builds_run_the_direct_scheme_on_tiles(native):
    """An AMX build runs the direct scheme on the tiles where C and Cout are multiples of 32: with Cout = 48,
    one span of 32 channels per output row on tiles and the other 16 on vectors; C = 16 stays on vectors.
    The real build does so where the CPU has AMX (Linux must grant the tile state: its refusal is named);
    on a CPU without, Linux refuses and the same results come from its vdpbf16ps code."""
    rng = np.random.default_rng(5)
    run = jax.jit(lambda x, k: cpu_kernel.conv3x3(x, k, native=native))
    refusal = cpu_kernel.amx_refusal(native)
    if native.endswith("emulated") or hardware.AMX_FLAGS <= hardware.cpu_flags(capped=False):
        assert refusal is None, f"Linux refused the AMX tile state: {refusal}"
    else:
        assert refusal and refusal.startswith(("ENOTSUP", "EOPNOTSUPP", "EINVAL")), refusal   # no AMX here
    for (c, cout), spans in (((64, 48), 2 * 5), ((16, 32), 0)):
        x = jnp.asarray(rng.standard_normal((2, 5, 40, c)), jnp.bfloat16)
        k = jnp.asarray(rng.standard_normal((3, 3, c, cout)) * 0.1, jnp.bfloat16)
        before = cpu_kernel.amx_spans(native)
        y = run(x, k)
        exact = exact_conv(x.astype(jnp.float32), k.astype(jnp.float32), 0.0)
        bound = 2.0 ** -8 * np.abs(exact) + 1e-4 * np.abs(exact).max()
        assert np.all(np.abs(np.asarray(y, np.float64) - exact) <= bound)
        assert cpu_kernel.amx_spans(native) - before == (spans if refusal is None else 0)


def test_builds_without_tiles_say_so(monkeypatch):
    """A build without tiles says so; on a CPU that lists AMX, so does a bench: the tiles in use, or why not."""
    assert cpu_kernel.amx_refusal(False) == "no tiles in the portable build"
    monkeypatch.setattr(hardware, "cpu_flags", lambda capped=True: frozenset({"avx2", "fma"}))
    assert cpu_kernel.amx_status() is None
    monkeypatch.setattr(hardware, "cpu_flags", lambda capped=True: frozenset({"avx512f", *hardware.AMX_FLAGS}))
    for refusal, status in ((None, "AMX tiles in use"),
                            ("ENOSPC (No space left on device)", "AMX tiles unused: ENOSPC (No space left on device)")):
        monkeypatch.setattr(cpu_kernel, "amx_refusal", lambda native=True: refusal)
        assert cpu_kernel.amx_status() == status


def test_a_build_the_compiler_refused_falls_back_to_the_next(monkeypatch):
    """An older compiler may not know the newest build's flags (AMX's): the install leaves that build out,
    and the next build this CPU runs is used."""
    lib = cpu_kernel.LIBRARIES["bf16"]
    newer = dataclasses.replace(lib, builds={"newest": ((), ("-mno-such-instructions",)), **lib.builds})
    monkeypatch.setitem(cpu_kernel.LIBRARIES, "bf16", newer)
    monkeypatch.setattr(cpu_kernel, "native_builds", lambda library: ["newest", "amx-emulated"])
    cpu_kernel._fastest.cache_clear()
    try:
        assert cpu_kernel._fastest("bf16") == "amx-emulated"
        with pytest.raises(cpu_kernel.Unavailable, match="conv3x3_bf16-newest.so was not built at install"):
            cpu_kernel.build("newest", "bf16")
    finally:
        cpu_kernel._fastest.cache_clear()


def test_kernel_rejects_shapes_it_cannot_tile(monkeypatch):
    with pytest.raises(ValueError, match=r"the direct kernel takes a 3×3 kernel over C = 2·k inputs and 16·k "):
        cpu_kernel.conv3x3(jnp.zeros((1, 4, 4, 3), jnp.bfloat16), jnp.zeros((3, 3, 3, 16)), native=False)
    with pytest.raises(ValueError, match="and 16·k outputs; got"):
        cpu_kernel.conv3x3(jnp.zeros((1, 4, 4, 8), jnp.bfloat16), jnp.zeros((3, 3, 8, 24)), native=False)
    for scheme in ("winograd2", "winograd4"):
        with pytest.raises(ValueError, match=f"the {scheme} kernel takes a 3×3 kernel over C = 16·k inputs"):
            cpu_kernel.conv3x3(jnp.zeros((1, 4, 4, 8)), jnp.zeros((3, 3, 8, 16)), None, scheme, native=False)
    # Channel counts a kernel cannot tile are not offered to the autotune (where the CPU runs the kernels).
    assert not any(p.startswith("kernel") for p in autotune.paths(jnp.float32, 8) + autotune.paths(jnp.bfloat16, 8))
    assert ("kernel-winograd4" in autotune.paths(jnp.float32, 64)) == cpu_kernel.available("winograd4")
    # A CPU (or a machine without a compiler) that cannot run a kernel: a one-line usage error naming the
    # instructions.
    monkeypatch.setattr(cpu_kernel, "cpu_has", lambda library="bf16": False)
    monkeypatch.setattr(cpu_kernel, "unavailable", cpu_kernel.unavailable.__wrapped__)
    with pytest.raises(ValueError, match="conv kernel-winograd4 cannot run here: it needs a CPU with avx512f fma, "
                                         "or avx2 fma "):
        autotune.check_setting("kernel-winograd4", jnp.float32)
    with pytest.raises(ValueError, match="conv kernel-direct cannot run here: it needs a CPU with avx512f avx512bw "
                                         "avx512vl "):
        autotune.check_setting("kernel-direct", jnp.bfloat16)


@pytest.mark.parametrize("path,dtype", PATHS)
def test_kernel_paths_in_the_model(monkeypatch, path, dtype):
    """conv="kernel-…" runs the body's square convolutions through the kernel (the build this CPU runs;
    the portable one elsewhere) and keeps the model as close to float32 through XLA's convolution as XLA's
    own paths are (test_accel.py's bounds: a bfloat16 model within 8 of 255; float32 within 1e-3)."""
    scheme = path.split("-")[1]
    dtype = jnp.dtype(dtype)
    native = cpu_kernel.cpu_has(cpu_kernel.LIBRARY[scheme])
    real = cpu_kernel.conv3x3
    calls = []

    def counted(x, k, b=None, scheme="direct", native=native, pooled=False):
        calls.append((k.shape, scheme))
        return real(x, k, b, scheme, native=native, pooled=pooled)
    if not native:   # a CPU without the instructions: the same path through the portable build
        monkeypatch.setattr(cpu_kernel, "available", lambda scheme="direct": True)
    monkeypatch.setattr(cpu_kernel, "conv3x3", counted)
    assert path in autotune.paths(dtype)
    weights = init_weights(SMALL, 6)
    lr = np.random.default_rng(6).uniform(0, 255, (1, 12, 12, 3)).astype(np.float32)
    f32 = np.asarray(accel.forward(accel.model_from_weights(weights, SMALL, conv="xla"), lr))
    ours = np.asarray(accel.forward(accel.model_from_weights(weights, SMALL, dtype=dtype, conv=path), lr))
    # The body's square convolutions and the upsampler's (16 -> 4·16 channels); not the head's or tail's (3).
    assert {c[1] for c in calls} == {scheme} and {c[0] for c in calls} == {(3, 3, 16, 16), (3, 3, 16, 64)}, calls
    err = np.abs(ours - f32)
    if dtype == jnp.float32:
        assert err.max() < 1e-3, err.max()
    else:
        assert err.max() < 8 and err.mean() < 1.5, (err.max(), err.mean())
    if not cpu_kernel.serves(scheme, jnp.float32):   # the bfloat16 kernels: not for a float32 model
        assert path not in autotune.paths(jnp.float32)
        with pytest.raises(ValueError, match="not offered for float32"):
            autotune.check_setting(path, jnp.float32)


def test_bfloat16_models_keep_a_kernel_without_bfloat16_instructions(monkeypatch):
    """On a CPU with AVX-512 or AVX2 but no AVX512-BF16 (Intel before Cooper Lake, AMD before Zen 4) a bfloat16
    model is offered the float32 kernel, bfloat16 in and out; where the CPU has neither, no kernel."""
    monkeypatch.setattr(cpu_kernel, "available", lambda scheme="direct": scheme == "winograd4")
    monkeypatch.setattr(cpu_kernel, "unavailable", lambda scheme="direct": None if scheme == "winograd4" else
                        f"it needs a CPU with {cpu_kernel.needs(scheme)} (in /proc/cpuinfo)")
    assert [p for p in autotune.paths(jnp.bfloat16, 64) if p.startswith("kernel")] == ["kernel-winograd4"]
    assert autotune.check_setting("kernel-winograd4", jnp.bfloat16) == "kernel-winograd4"
    with pytest.raises(ValueError, match="conv kernel-winograd2 cannot run here: it needs a CPU with avx512f "
                                         "avx512bw avx512vl"):
        autotune.check_setting("kernel-winograd2", jnp.bfloat16)
    monkeypatch.setattr(cpu_kernel, "available", lambda scheme="direct": False)
    assert not any(p.startswith("kernel") for p in autotune.paths(jnp.bfloat16, 64))
