"""Real photos: the JAX degradation chain (accel/degrade/chain.py), the choice of model from the input file
(accel/run/choose.py), the strength control, and the degraded test set (accel/degrade/testset.py)."""
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SET5
from PIL import Image

import accel
from accel import evaluate, upscale
from accel.api import SHIPPED
from accel.degrade import chain as degrade
from accel.degrade import testset
from accel.run.choose import QUALITY_THRESHOLD, choose, jpeg_quality, webp_is_lossy
from accel.train import TrainConfig, Trainer
from reference import RCANConfig
from reference.metrics import imresize


def hr(name="butterfly", size=None):
    im = np.asarray(Image.open(SET5 / "HR_x2" / f"{name}_HR_x2.png").convert("RGB"))
    return im if size is None else im[:size, :size]


def psnr(a, b):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / max(mse, 1e-10))


def pillow_jpeg(img, quality):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


# --- the JAX chain -----------------------------------------------------------------------------------

@pytest.mark.parametrize("quality", [30, 60, 90])
@pytest.mark.parametrize("name", ["baby", "butterfly", "head"])
def test_jax_jpeg_decodes_like_pillow(name, quality):
    img = hr(name)[:240, :240]
    ours = np.asarray(jax.jit(degrade.jpeg)(jnp.asarray(img, jnp.float32), quality))
    theirs = np.asarray(Image.open(io.BytesIO(pillow_jpeg(img, quality))).convert("RGB"))
    # What differs: libjpeg's fixed-point colour conversion and integer DCT (islow) against our float
    # ones, and its alternating rounding bias in the chroma downsampling; the coefficients' rounding is
    # the same, so the decodes agree far above what JPEG itself changes (27–42 dB against the original).
    assert psnr(ours, theirs) >= 40, psnr(ours, theirs)
    assert psnr(ours, img) == pytest.approx(psnr(theirs, img), abs=0.2)
    assert set(np.unique(ours)) <= set(range(256))


def test_quality_scaling_is_libjpegs():
    # The tables Pillow writes are libjpeg's scaled tables: ours must be the same numbers.
    for q in (10, 50, 75, 95):
        with Image.open(io.BytesIO(pillow_jpeg(hr(size=64), q))) as im:
            assert list(im.quantization[0]) == np.asarray(degrade.scaled_table(degrade.LUMINANCE, q)).ravel().tolist()
            assert list(im.quantization[1]) == np.asarray(degrade.scaled_table(degrade.CHROMINANCE, q)).ravel().tolist()


@pytest.mark.parametrize("seed", range(12))
def test_blur_kernels_sum_to_one_and_have_their_symmetries(seed):
    key = jax.random.key(seed)
    k = np.asarray(degrade.random_kernel(key, (0.2, 3.0), 0.3))
    assert k.shape == (21, 21) and abs(k.sum() - 1) < 1e-5
    # Every family is point-symmetric (Σ is symmetric): k(−x) = k(x), so convolution = correlation.
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7)
    d2 = degrade.anisotropic_distance(1.3, 1.3, 0.0)
    for family in (0, 2, 4):   # isotropic ones: symmetric under every flip and the transpose
        iso = np.asarray(degrade.normalised(degrade.gaussian_kernel(d2, family, 1.5), degrade.support(15)))
        for t in (iso[::-1], iso[:, ::-1], iso.T):
            np.testing.assert_allclose(iso, t, atol=1e-7)
        assert abs(iso.sum() - 1) < 1e-5 and iso[:3].sum() == 0   # zero outside the 15×15 support
    ring = np.asarray(degrade.normalised(degrade.sinc_kernel(np.pi / 3), degrade.support(21)))
    np.testing.assert_allclose(ring, ring.T, atol=1e-7)
    assert abs(ring.sum() - 1) < 1e-5 and ring.min() < 0   # the ripples that make ringing


def test_bessel_j1_and_filter():
    from scipy.ndimage import correlate
    from scipy.special import j1
    x = np.linspace(0, 45, 500).astype(np.float32)
    np.testing.assert_allclose(np.asarray(degrade.bessel_j1(jnp.asarray(x))), j1(x), atol=2e-6)
    img = hr(size=64).astype(np.float32)
    k = np.arange(441, dtype=np.float32).reshape(21, 21) / 441 ** 2   # asymmetric: catches a flipped kernel
    ours = np.asarray(degrade.filter2d(jnp.asarray(img), jnp.asarray(k)))
    ref = np.stack([correlate(img[..., c], k, mode="mirror") for c in range(3)], -1)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_resize_and_back_is_the_identity_at_scale_one_and_loses_detail_below():
    img = jnp.asarray(hr(size=96), jnp.float32)
    for method in range(3):
        np.testing.assert_allclose(np.asarray(degrade.resize_and_back(img, 1.0, method)), img, atol=1e-3)
        half = np.asarray(degrade.resize_and_back(img, 0.5, method))
        assert half.shape == img.shape and 18 < psnr(half, img) < 40
    # The matrices' rows sum to 1: flat stays flat.
    flat = jnp.full((96, 96, 3), 100.0)
    np.testing.assert_allclose(np.asarray(degrade.resize_and_back(flat, 0.63, 2)), 100.0, atol=1e-3)


def test_chain_is_deterministic_per_key_and_compiles_once():
    h = jnp.asarray(np.stack([hr(size=96), hr("baby", 96), hr("head", 96), hr("bird", 96)]), jnp.float32)
    clean = jnp.asarray(np.stack([imresize(np.asarray(x, np.uint8), 0.5) for x in h]), jnp.float32)
    run = jax.jit(lambda key: degrade.degrade_batch(key, clean, h, 2))
    a, b, c = run(jax.random.key(1)), run(jax.random.key(1)), run(jax.random.key(2))
    assert run._cache_size() == 1                                  # static shapes: one compile for every key
    assert a.shape == (4, 48, 48, 3) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 255 and np.array_equal(a, np.round(a))
    # Degraded, but still the same picture: worse than the clean bicubic LR, nowhere near noise.
    quality = [psnr(x, y) for x, y in zip(np.asarray(c), np.asarray(clean))]
    assert all(q > 14 for q in quality), quality


def test_training_step_with_the_real_chain_and_ema():
    tiny = RCANConfig(scale=2, n_resgroups=1, n_resblocks=1, n_feats=8, reduction=2)
    from accel.data import TrainingImages, list_images
    images = TrainingImages(list_images([SET5 / "HR_x2"]), 2, 16)
    trainer = Trainer(TrainConfig(tiny, steps=4, batch=2, patch=16, degradation="real", ema=0.9, warmup=0))
    trainer.set_data(images)
    start = trainer.weights()
    lr, hr_ = trainer.batch(0)
    assert lr.shape == (2, 16, 16, 3) and hr_.shape == (2, 32, 32, 3)
    for _ in range(3):
        assert np.isfinite(float(trainer.train_step()))
    ema, raw = trainer.weights(), trainer._official(trainer.params)
    k = "head.0.weight"
    # The EMA lies between the start and the optimizer's weights (decay (1 + t) / (10 + t) over 3 steps).
    assert not np.array_equal(ema[k], raw[k]) and not np.array_equal(ema[k], start[k])
    with pytest.raises(ValueError, match="multiple of 16"):
        TrainConfig(tiny, steps=4, patch=24, degradation="real")


# --- choosing the model from the file ---------------------------------------------------------------

@pytest.mark.parametrize("quality", [20, 60, 75, 90, 95, 100])
def test_jpeg_quality_is_read_from_the_tables(quality):
    with Image.open(io.BytesIO(pillow_jpeg(hr(size=64), quality))) as im:
        assert jpeg_quality(im) == (quality, True)


def test_auto_picks_real_for_a_jpeg_and_deep_for_a_png(tmp_path):
    small = hr(size=64)
    (tmp_path / "a.jpg").write_bytes(pillow_jpeg(small, 75))
    (tmp_path / "b.jpg").write_bytes(pillow_jpeg(small, 98))
    Image.fromarray(small).save(tmp_path / "c.png")
    Image.fromarray(small).save(tmp_path / "d.webp", lossless=True)
    Image.fromarray(small).save(tmp_path / "e.webp", quality=80)
    picks = {p: choose(tmp_path / p) for p in ("a.jpg", "b.jpg", "c.png", "d.webp", "e.webp")}
    assert {p: c.model for p, c in picks.items()} == {"a.jpg": "real", "b.jpg": "deep", "c.png": "deep",
                                                       "d.webp": "deep", "e.webp": "real"}
    assert "quality 75" in picks["a.jpg"].reason and str(QUALITY_THRESHOLD) in picks["a.jpg"].reason
    assert (webp_is_lossy(tmp_path / "d.webp"), webp_is_lossy(tmp_path / "e.webp")) == (False, True)






def test_upscale_auto_says_which_model_and_why(tmp_path, capsys):
    small = hr(size=32)
    (tmp_path / "photo.jpg").write_bytes(pillow_jpeg(small, 75))
    Image.fromarray(small).save(tmp_path / "shot.png")
    assert upscale.main([str(tmp_path / "photo.jpg"), "--format", "png"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith(f"model: real for {tmp_path / 'photo.jpg'}: a JPEG of quality 75")
    assert upscale.main([str(tmp_path / "shot.png"), "--json"]) == 0
    out, err = capsys.readouterr()
    row = json.loads(out)
    assert row["model"] == "shipped:deep" and row["strength"] == 0 and "lossless PNG" in row["model_reason"]
    assert err.splitlines()[0].startswith("model: deep for ")



def test_strength_ends_are_the_two_models_bit_for_bit(tmp_path, capsys):
    small = hr("bird", 24)
    src = tmp_path / "p.jpg"
    src.write_bytes(pillow_jpeg(small, 70))
    outs = {}
    for name, extra in (("s0", ["--strength", "0"]), ("deep", ["--model", "deep"]), ("s1", ["--strength", "1"]),
                        ("real", ["--model", "real"]), ("half", ["--model", "real", "--strength", "0.5"])):
        assert upscale.main([str(src), "--suffix", name, "--format", "png", "--json", "--quiet", *extra]) == 0
        outs[name] = np.asarray(Image.open(tmp_path / f"p_{name}.png"))
        row = json.loads(capsys.readouterr().out)
        assert row["strength"] == {"s0": 0, "deep": 0, "s1": 1, "real": 1, "half": 0.5}[name]
    assert np.array_equal(outs["s0"], outs["deep"]) and np.array_equal(outs["s1"], outs["real"])
    assert not np.array_equal(outs["half"], outs["deep"]) and not np.array_equal(outs["half"], outs["real"])
    # The interpolated weights are the weighted sum of the two files, tensor by tensor.
    half = accel.api.shipped_weights("real", 0.5)[0]
    a, b = accel.api.shipped_weights("deep")[0], accel.api.shipped_weights("real")[0]
    k = "head.0.weight"
    np.testing.assert_allclose(half[k], 0.5 * a[k] + 0.5 * b[k], rtol=1e-6)
    with pytest.raises(SystemExit):
        upscale.main([str(src), "--strength", "1.5"])
    with pytest.raises(SystemExit):
        upscale.main([str(src), "--strength", "0.5", "--weights", str(SHIPPED["deep"])])



def test_a_corrupt_jpeg_is_one_line_and_the_folder_goes_on(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(pillow_jpeg(hr(size=24), 80))
    data = bytearray(pillow_jpeg(hr("baby", 24), 80))
    data[2:40] = b"\x00" * 38   # the header's first segments destroyed
    (folder / "bad.jpg").write_bytes(bytes(data))
    code = upscale.main([str(folder), "-o", str(tmp_path / "out"), "--format", "png"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "bad.jpg" in errors[0]
    assert (tmp_path / "out" / "good_x2.png").is_file() and not (tmp_path / "out" / "bad_x2.png").exists()


# --- the degraded test set ---------------------------------------------------------------------------

def test_degraded_set_is_seeded_per_image_and_within_its_ranges():
    img = hr(size=128)
    a, da = testset.degrade_photo(img, 2, testset.rng_for(0, "x"))
    b, db = testset.degrade_photo(img, 2, testset.rng_for(0, "x"))
    c, dc = testset.degrade_photo(img, 2, testset.rng_for(1, "x"))
    assert a == b and da == db and a != c
    assert testset.BLUR[0] <= da["blur_sigma"] <= testset.BLUR[1]
    assert testset.QUALITY[0] <= da["quality"] <= testset.QUALITY[1]
    lr = testset.decode(a)
    assert lr.shape == (64, 64, 3)
    with Image.open(io.BytesIO(a)) as im:
        assert jpeg_quality(im) == (da["quality"], True)


def test_evaluate_degrade_scores_bicubic_beside_the_model_and_saves_the_inputs(tmp_path, capsys):
    code = evaluate.main(["--hr", str(SET5 / "HR_x2"), "--scale", "2", "--degrade", "3", "--model", "compact",
                          "--save-lr", str(tmp_path / "lr"), "--json", "--quiet"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["degraded"]["seed"] == 3 and len(result["images"]) == 5
    saved = sorted(p.name.split("_")[0] for p in (tmp_path / "lr").glob("*.jpg"))
    assert saved == ["baby", "bird", "butterfly", "head", "woman"]
    # Degraded inputs cost the bicubic baseline dBs against the clean Set5 (33.67).
    assert result["bicubic"]["psnr"] < 32.5
    # The saved files are the inputs that were scored: given back with --lr they score the same.
    code = evaluate.main(["--hr", str(SET5 / "HR_x2"), "--scale", "2", "--lr", str(tmp_path / "lr"),
                          "--model", "compact", "--json", "--quiet"])
    again = json.loads(capsys.readouterr().out)
    assert code == 0 and again["mean"]["psnr"] == pytest.approx(result["mean"]["psnr"], abs=1e-9)
