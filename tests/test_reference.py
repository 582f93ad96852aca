"""reference (NumPy) against the official architecture in PyTorch, layer by layer then whole."""
import numpy as np
import pytest
import torch
from conftest import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from reference import RCANConfig, rcan
from reference.weights import WeightsError, init_weights, load_weights, save_weights
from tools import torch_rcan

torch.set_num_threads(2)


def t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


@st.composite
def configs(draw, max_groups=3, max_blocks=3):
    n_feats = draw(st.sampled_from([8, 12, 16, 24, 32]))
    reduction = draw(st.sampled_from([r for r in (1, 2, 4, 8, 16) if n_feats % r == 0 and n_feats // r >= 1]))
    return RCANConfig(scale=draw(st.sampled_from([2, 3, 4, 8])), n_resgroups=draw(st.integers(1, max_groups)),
                      n_resblocks=draw(st.integers(1, max_blocks)), n_feats=n_feats, reduction=reduction)


# --- primitives ------------------------------------------------------------------------------------

@settings(max_examples=25)
@given(h=st.integers(1, 9), w=st.integers(1, 9), cin=st.integers(1, 5), cout=st.integers(1, 5),
       k=st.sampled_from([1, 3]), seed=st.integers(0, 2**16))
def test_conv2d_equals_naive_and_torch(h, w, cin, cout, k, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(h, w, cin)).astype(np.float32)
    wt = rng.normal(size=(cout, cin, k, k)).astype(np.float32)
    b = rng.normal(size=cout).astype(np.float32)
    fast, naive = rcan.conv2d(x, wt, b), rcan.conv2d_naive(x, wt, b)
    ref = torch.nn.functional.conv2d(t(x).permute(2, 0, 1)[None], t(wt), t(b), padding=k // 2)[0].permute(1, 2, 0)
    # Sums of at most 45 products of N(0,1) values: float32 rounding stays far below 1e-4.
    assert_close(fast, naive, 1e-4, 1e-5, "conv2d vs conv2d_naive")
    assert_close(fast, ref.numpy(), 1e-4, 1e-5, "conv2d vs torch")


@pytest.mark.parametrize("r", [2, 3])
def test_pixel_shuffle_matches_torch(r):
    x = np.random.default_rng(r).normal(size=(5, 7, 4 * r * r)).astype(np.float32)
    ref = torch.nn.PixelShuffle(r)(t(x).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(rcan.pixel_shuffle(x, r), ref)  # a permutation: exact


# --- blocks against the official torch modules -----------------------------------------------------

def small_setup(seed=0, size=(11, 13)):
    config = RCANConfig(scale=2, n_resgroups=2, n_resblocks=3, n_feats=16, reduction=4)
    weights = init_weights(config, seed)
    oracle = torch_rcan.from_weights(weights, config)
    x = np.random.default_rng(seed).normal(size=(*size, config.n_feats)).astype(np.float32) * 10
    return config, weights, oracle, x


def run_module(module, x):
    with torch.no_grad():
        return module(t(x).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()


def test_channel_attention_matches_torch():
    config, weights, oracle, x = small_setup()
    ours = rcan.channel_attention(weights, "body.1.body.2.body.3", x)
    # One mean over 143 pixels and two tiny matmuls: float32 rounding, relative to |x| ~ 30.
    assert_close(ours, run_module(oracle.body[1].body[2].body[3], x), 1e-4, 1e-5, "channel attention")


def test_rcab_matches_torch():
    config, weights, oracle, x = small_setup(1)
    ours = rcan.rcab(weights, "body.0.body.1", x)
    assert_close(ours, run_module(oracle.body[0].body[1], x), 1e-4, 1e-5, "RCAB")


def test_residual_group_matches_torch():
    config, weights, oracle, x = small_setup(2)
    ours = rcan.residual_group(weights, 1, config, x)
    # Four convs deep: rounding grows a little with depth.
    assert_close(ours, run_module(oracle.body[1], x), 2e-4, 1e-5, "residual group")


# --- the whole network -----------------------------------------------------------------------------

@settings(max_examples=20)
@given(config=configs(), h=st.integers(1, 24), w=st.integers(1, 24), seed=st.integers(0, 2**16))
def test_forward_matches_torch(config, h, w, seed):
    weights = init_weights(config, seed)
    lr = np.random.default_rng(seed).uniform(0, 255, (h, w, 3)).astype(np.float32)
    ours = reference.forward(weights, config, lr)
    assert ours.shape == (config.scale * h, config.scale * w, 3)
    theirs = torch_rcan.run(torch_rcan.from_weights(weights, config), lr)
    # Outputs are ~0..255; float32 has ~1e-5 relative precision at that size; a few dozen layers of
    # accumulation in different orders (BLAS vs oneDNN) stay within 1e-3 absolute.
    assert_close(ours, theirs, 1e-3, 1e-6, f"forward {config} {h}x{w}")


@pytest.mark.slow
def test_full_official_x2_matches_torch():
    config = RCANConfig.official(2)
    weights = init_weights(config, 0)
    lr = np.random.default_rng(0).uniform(0, 255, (20, 17, 3)).astype(np.float32)
    trace = {}
    ours = reference.forward(weights, config, lr, trace=trace)
    theirs = torch_rcan.run(torch_rcan.from_weights(weights, config), lr)
    assert np.isfinite(ours).all() and np.abs(ours).max() < 1000  # init gives image-range outputs
    # 200 RCABs deep (≈ 430 convs): float32 rounding accumulates along the chain and the two sum in
    # different orders; 1e-3 on outputs in 0..255 is 4e-6 of the range (well above float32's 6e-8 × depth).
    err = assert_close(ours, theirs, 1e-3, 0, "full G10R20F64 x2")
    print(f"full official x2: max |reference - torch| = {err:.2e}")
    assert trace["attention"].shape == (10, 20, 64)
    assert trace["group_9"].shape == (20, 17, 64) and trace["upsampler"].shape == (40, 34, 64)
    np.testing.assert_array_equal(trace["output"], ours)


def test_forward_rejects_bad_input():
    config = RCANConfig(n_resgroups=1, n_resblocks=1, n_feats=8, reduction=2)
    with pytest.raises(ValueError, match=r"lr must be \[H, W, 3\]"):
        reference.forward(init_weights(config), config, np.zeros((4, 4)))


# --- config and weights file -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(scale=5), "scale must be one of"),
    (dict(n_feats=30, reduction=16), "divisible by reduction"),
    (dict(n_resgroups=0), "n_resgroups must be a positive integer"),
    (dict(n_resblocks=-1), "n_resblocks must be a positive integer"),
    (dict(rgb_range=0), "rgb_range must be positive"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RCANConfig(**kwargs)


def test_official_sizes_match_facts():
    expected = {2: 15_444_667, 3: 15_629_307, 4: 15_592_379, 8: 15_740_091}
    for scale, count in expected.items():
        shapes = reference.official_shapes(RCANConfig.official(scale))
        assert sum(int(np.prod(s)) for s in shapes.values()) == count
        assert len(shapes) == 1632 + 2 * (len(RCANConfig.official(scale).upsample_steps) - 1)


def test_weights_round_trip_is_bit_exact(tmp_path):
    config = RCANConfig(scale=3, n_resgroups=2, n_resblocks=2, n_feats=8, reduction=2)
    weights = init_weights(config, 3)
    path = tmp_path / "w.safetensors"
    save_weights(path, weights, config, source_name="test", source_sha256="abc")
    loaded, config2 = load_weights(path)
    assert config2 == config
    assert list(loaded) == list(weights) or set(loaded) == set(weights)
    for k in weights:
        assert loaded[k].tobytes() == weights[k].tobytes(), k
    # The official torch module tree accepts it strictly.
    torch_rcan.from_weights(loaded, config)


def test_weights_errors(tmp_path):
    config = RCANConfig(n_resgroups=1, n_resblocks=2, n_feats=8, reduction=2)
    weights = init_weights(config)
    path = tmp_path / "w.safetensors"
    bad = dict(weights)
    del bad["head.0.bias"]
    bad["extra.weight"] = np.zeros(3, np.float32)
    bad["tail.1.weight"] = np.zeros((3, 8, 5, 5), np.float32)
    bad["head.0.weight"] = weights["head.0.weight"].astype(np.float64)
    with pytest.raises(WeightsError) as e:
        save_weights(path, bad, config)
    msg = str(e.value)
    assert "1 missing: head.0.bias" in msg and "1 unexpected: extra.weight" in msg
    assert "tail.1.weight: (3, 8, 5, 5) != (3, 8, 3, 3)" in msg and "head.0.weight: float64" in msg
    assert not path.exists()  # nothing half-written

    with pytest.raises(WeightsError, match="no such weights file"):
        load_weights(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x01" * 20)
    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_weights(tmp_path / "junk.safetensors")
    from safetensors.numpy import save_file
    save_file(weights, str(tmp_path / "bare.safetensors"))
    with pytest.raises(WeightsError, match="not a canonical RCAN file"):
        load_weights(tmp_path / "bare.safetensors")
    # A file whose metadata claims another config: every mismatch listed.
    other = RCANConfig(n_resgroups=1, n_resblocks=3, n_feats=8, reduction=2)
    save_weights(path, weights, config)
    from reference.weights import FORMAT
    save_file(weights, str(tmp_path / "lie.safetensors"), metadata={"format": FORMAT, "config": other.to_json()})
    with pytest.raises(WeightsError, match=r"10 missing: body\.0\.body\.2\.body\.0\.weight.*2 unexpected: body\.0\.body\.2\.bias"):
        load_weights(tmp_path / "lie.safetensors")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    from reference.support.files import atomic_write

    def boom(tmp):
        open(tmp, "wb").write(b"partial")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.safetensors", boom)
    assert list(tmp_path.iterdir()) == []
