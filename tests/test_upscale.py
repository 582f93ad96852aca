"""python -m accel.upscale end to end: every mode, the naming rules, bad input, tiles, chop, ensemble."""
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SET5, assert_close
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

import accel
import reference
from accel.run import runner, tiles
from accel.run.pipeline import upscale_image
from accel.upscale import main  # noqa: F401  (the CLI's module must import cleanly)
from reference import RCANConfig
from reference.metrics import psnr, quantize
from reference.weights import init_weights, save_weights

TINY = RCANConfig(scale=2, n_resgroups=1, n_resblocks=2, n_feats=8, reduction=2)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    save_weights(d / "tiny_x2.safetensors", init_weights(TINY, 0), TINY)
    x4 = RCANConfig(scale=4, n_resgroups=1, n_resblocks=1, n_feats=8, reduction=2)
    save_weights(d / "tiny_x4.safetensors", init_weights(x4, 0), x4)
    return d


def photo(size=(40, 30)):
    im = Image.open(SET5 / "HR_x2" / "butterfly_HR_x2.png").convert("RGB")
    return im.crop((60, 60, 60 + size[0], 60 + size[1]))


def cli(*args, cwd=None):
    r = subprocess.run([sys.executable, "-m", "accel.upscale", *map(str, args)], capture_output=True, text=True,
                       cwd=cwd)
    return r.returncode, r.stderr


def make_modes(folder: Path) -> dict:
    rgb = photo()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    files = {}

    def put(name, im, **kw):
        im.save(folder / name, **kw)
        files[name] = im

    put("rgb.png", rgb, icc_profile=srgb)
    put("gray.png", rgb.convert("L"))
    put("la.png", rgb.convert("LA"))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
    put("rgba.png", rgba)
    put("pal.png", rgb.convert("P", palette=Image.ADAPTIVE))
    put("cmyk.jpg", rgb.convert("CMYK"))
    g16 = (np.asarray(rgb.convert("L"), np.uint16) * 257 + np.arange(30)[:, None].astype(np.uint16))
    put("deep.png", Image.fromarray(g16.astype(np.uint16)))
    put("photo.jpg", rgb, quality=95)
    put("photo.webp", rgb)
    put("photo.tiff", rgb)
    put("photo.bmp", rgb)
    exif = Image.Exif()
    exif[0x0112] = 6   # rotate 90° clockwise on display
    put("rotated.jpg", rgb, exif=exif.tobytes())
    return files


EXPECTED_MODE = {"rgb.png": "RGB", "gray.png": "L", "la.png": "LA", "rgba.png": "RGBA", "pal.png": "RGB",
                 "cmyk.jpg": "RGB", "deep.png": "I;16", "photo.jpg": "RGB", "photo.webp": "RGB",
                 "photo.tiff": "RGB", "photo.bmp": "RGB", "rotated.jpg": "RGB"}


def test_every_mode_keeps_mode_and_depth(tmp_path, tiny_weights):
    src = tmp_path / "in"
    src.mkdir()
    files = make_modes(src)
    code, err = cli(src, "-o", tmp_path / "out", "--weights", tiny_weights / "tiny_x2.safetensors", "--quiet")
    assert code == 0, err
    for name, im in files.items():
        stem, ext = name.rsplit(".", 1)
        out = Image.open(tmp_path / "out" / f"{stem}_x2.{ext}")
        w, h = (30, 40) if name == "rotated.jpg" else (40, 30)   # EXIF orientation applied
        assert out.size == (2 * w, 2 * h), name
        mode = out.mode if out.mode != "I;16B" else "I;16"
        assert mode == EXPECTED_MODE[name], (name, out.mode)
    deep = np.asarray(Image.open(tmp_path / "out" / "deep_x2.png"))
    assert deep.dtype == np.uint16 and len(np.unique(deep % 257)) > 10     # really 16-bit, not 8-bit × 257
    icc = Image.open(src / "rgb.png").info.get("icc_profile")
    assert icc and Image.open(tmp_path / "out" / "rgb_x2.png").info.get("icc_profile") == icc   # ICC kept
    alpha = np.asarray(Image.open(tmp_path / "out" / "rgba_x2.png").getchannel("A"))
    assert alpha.min() < 20 and alpha.max() > 235                          # the gradient survived


def test_naming_rules(tmp_path, tiny_weights):
    w = tiny_weights / "tiny_x2.safetensors"
    photo().save(tmp_path / "a.png")
    photo().save(tmp_path / "b.jpg")
    assert cli(tmp_path / "a.png", "--weights", w)[0] == 0
    assert (tmp_path / "a_x2.png").is_file()                              # beside the input
    assert cli(tmp_path / "a.png", "-o", tmp_path / "named.png", "--weights", w)[0] == 0
    assert Image.open(tmp_path / "named.png").size == (80, 60)            # -o FILE for one input
    assert cli(tmp_path / "a.png", tmp_path / "b.jpg", "-o", tmp_path / "many", "--weights", w,
               "--format", "webp")[0] == 0
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["a_x2.webp", "b_x2.webp"]
    # Existing outputs are kept unless --force.
    before = (tmp_path / "a_x2.png").read_bytes()
    code, err = cli(tmp_path / "a.png", "--weights", w)
    assert code == 1 and "exists (use --force" in err and (tmp_path / "a_x2.png").read_bytes() == before
    assert cli(tmp_path / "a.png", "--weights", w, "--force")[0] == 0
    assert (tmp_path / "a_x2.png").stat().st_mode & 0o044   # readable like any file the user saves


def test_folder_walk_skips_only_our_outputs(tmp_path, tiny_weights):
    """Official LR names end in _x2 too (baby_LRBI_x2.png): only `<stem>_x2` beside `<stem>` is skipped."""
    d = tmp_path / "lr"
    d.mkdir()
    photo().save(d / "baby_LRBI_x2.png")
    photo().save(d / "bird.png")
    photo().save(d / "bird_x2.png")          # an earlier output of bird.png
    code, err = cli(d, "-o", tmp_path / "out", "--weights", tiny_weights / "tiny_x2.safetensors", "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["baby_LRBI_x2_x2.png", "bird_x2.png"]


def test_bad_inputs_fail_alone(tmp_path, tiny_weights):
    w = tiny_weights / "tiny_x2.safetensors"
    d = tmp_path / "in"
    d.mkdir()
    photo().save(d / "good1.png")
    (d / "empty.png").write_bytes(b"")
    buf = io.BytesIO()
    photo((90, 90)).save(buf, "PNG")
    (d / "truncated.png").write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    (d / "text.png").write_text("not an image\n")
    photo((120, 100)).save(d / "huge.png")
    photo().save(d / "good2.png")
    inputs = [d / n for n in ("good1.png", "empty.png", "truncated.png", "text.png", "missing.png", "huge.png",
                              "good2.png")]
    out = tmp_path / "out"
    code, err = cli(*inputs, "-o", out, "--weights", w, "--max-pixels", "10000", "--quiet")
    lines = err.strip().splitlines()
    assert code == 1
    assert len(lines) == 5, err                                          # one line per bad file, no traceback
    for bad, why in [("empty.png", "not an image"), ("truncated.png", "cannot decode"), ("text.png", "not an image"),
                     ("missing.png", "no such file"), ("huge.png", "safety limit")]:
        assert any(line.startswith(f"error: {d / bad}: ") and why in line for line in lines), (bad, err)
    assert sorted(p.name for p in out.iterdir()) == ["good1_x2.png", "good2_x2.png"]   # the rest was done


def test_unwritable_output_folder(tmp_path, tiny_weights):
    photo().save(tmp_path / "a.png")
    code, err = cli(tmp_path / "a.png", "-o", "/proc/a_x2.png", "--weights", tiny_weights / "tiny_x2.safetensors")
    assert code == 1 and err.startswith(f"error: {tmp_path / 'a.png'}: ") and err.count("\n") == 1, err
    code, err = cli(tmp_path / "a.png", "-o", tmp_path / "nodir" / "x.png", "--weights",
                    tiny_weights / "tiny_x2.safetensors")
    assert code == 1 and "does not exist" in err


def test_weights_errors(tmp_path, tiny_weights):
    photo().save(tmp_path / "a.png")
    code, err = cli(tmp_path / "a.png", "--weights", tiny_weights / "tiny_x4.safetensors", "--scale", "2")
    assert code == 2 and "×4, not ×2" in err and err.count("\n") == 1
    code, err = cli(tmp_path / "a.png", "--weights", tmp_path / "nope.safetensors")
    assert code == 2 and "nope.safetensors" in err and "no such" in err
    code, err = cli(tmp_path / "a.png", "--scale", "3")
    assert code == 2 and "pass --weights" in err
    assert not (tmp_path / "a_x2.png").exists() and not (tmp_path / "a_x3.png").exists()


def test_conv_path_the_dtype_or_device_cannot_run(tmp_path, monkeypatch):
    """A --conv the dtype does not offer, or an XLA:CPU path on another backend, is a usage error before
    anything loads or runs, and nothing is written."""
    import jax

    from accel.conv import autotune
    photo().save(tmp_path / "a.png")
    code, err = cli(tmp_path / "a.png", "--conv", "winograd2", "--dtype", "float32")   # (auto may be bfloat16)
    assert code == 2 and "error: conv winograd2 is not offered for float32: use one of" in err
    assert "Traceback" not in err and not (tmp_path / "a_x2.png").exists()
    assert autotune.check_setting("winograd2", jax.numpy.bfloat16) == "winograd2"
    monkeypatch.setattr(autotune.jax, "default_backend", lambda: "gpu")
    with pytest.raises(ValueError, match="conv winograd-ynn runs on a CPU only: on a gpu use one of auto, xla, "
                                         "xla-nchw, winograd$"):
        autotune.check_setting("winograd-ynn", jax.numpy.float32)
    assert [autotune.check_setting(c, jax.numpy.float32) for c in ("auto", "xla", "xla-nchw", "winograd")] == \
        ["auto", "xla", "xla-nchw", "winograd"]
    assert autotune.paths(jax.numpy.bfloat16, 64) == ["xla", "xla-nchw", "winograd", "winograd2"]
    monkeypatch.setattr(autotune.jax, "default_backend", lambda: "cpu")
    with pytest.raises(ValueError, match="conv xla-nchw runs on a GPU only: on a cpu use one of auto, xla, ynn"):
        autotune.check_setting("xla-nchw", jax.numpy.float32)


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    from accel.run import images
    out = tmp_path / "o.png"

    def failing_save(self, fp, *a, **k):
        Path(fp).write_bytes(b"\x89PNG partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        images.save_atomic(photo(), out, "png")
    assert list(tmp_path.iterdir()) == []


def test_default_weights_upscale(tmp_path):
    """No --weights: the shipped default (deep) model, on the README's example image."""
    example = Path(accel.__file__).parent / "examples" / "butterfly_lr.png"
    code, err = cli(example, "-o", tmp_path / "b.png")
    assert code == 0, err
    assert Image.open(tmp_path / "b.png").size == (2 * Image.open(example).width, 2 * Image.open(example).height)


# --- tiles, chop, ensemble -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_model():
    return accel.load_model(model="compact")   # a shipped model: real channel statistics


def test_tiled_matches_whole_image_without_seams(real_model):
    lr = np.asarray(Image.open(SET5 / "LR_x2" / "baby_LRBI_x2.png").convert("RGB"), np.float32)[:160, :160]
    whole = runner.super_resolve(real_model, lr)
    tiled = runner.super_resolve(real_model, lr, tiles.Plan(64, overlap=16))
    q = lambda a: quantize(a)
    score = psnr(q(whole), q(tiled), 0)
    print(f"tiled (64, overlap 16) vs whole image: {score:.2f} dB")
    assert score >= 50
    # No seam: the difference along tile borders is no larger than elsewhere (a seam is a spike there).
    diff = np.abs(whole - tiled).max(axis=2)
    starts = tiles.starts(160, 64, 16)
    edges = sorted({2 * s for s in starts[1:]} | {2 * (s + 64) for s in starts[:-1]})
    near = np.zeros(diff.shape, bool)
    for e in edges:
        near[max(e - 2, 0):e + 2] = True
        near[:, max(e - 2, 0):e + 2] = True
    on, off = diff[near], diff[~near]
    assert on.mean() <= 2 * off.mean() and on.max() <= 2 * off.max(), (on.mean(), off.mean(), on.max(), off.max())


def official_forward_chop(forward1, x, scale, shave=10, min_size=160000):
    """A line-by-line transcription of the official forward_chop (NCHW → here HWC, n_GPUs = 1)."""
    h, w = x.shape[:2]
    h_half, w_half = h // 2, w // 2
    h_size, w_size = h_half + shave, w_half + shave
    lr_list = [x[0:h_size, 0:w_size], x[0:h_size, (w - w_size):w], x[(h - h_size):h, 0:w_size],
               x[(h - h_size):h, (w - w_size):w]]
    if w_size * h_size < min_size:
        sr_list = [forward1(p) for p in lr_list]
    else:
        sr_list = [official_forward_chop(forward1, p, scale, shave, min_size) for p in lr_list]
    h, w = scale * h, scale * w
    h_half, w_half = scale * h_half, scale * w_half
    h_size, w_size = scale * h_size, scale * w_size
    output = np.zeros((h, w, 3), np.float32)
    output[0:h_half, 0:w_half] = sr_list[0][0:h_half, 0:w_half]
    output[0:h_half, w_half:w] = sr_list[1][0:h_half, (w_size - w + w_half):w_size]
    output[h_half:h, 0:w_half] = sr_list[2][(h_size - h + h_half):h_size, 0:w_half]
    output[h_half:h, w_half:w] = sr_list[3][(h_size - h + h_half):h_size, (w_size - w + w_half):w_size]
    return output


@pytest.mark.parametrize("size, min_size", [((37, 52), 160000), ((64, 70), 900)])
def test_chop_equals_the_official_forward_chop(size, min_size):
    weights = init_weights(TINY, 1)
    model = accel.model_from_weights(weights, TINY)
    x = np.random.default_rng(1).uniform(0, 255, (*size, 3)).astype(np.float32)
    ours = runner.forward_chop(model, x, min_size=min_size)
    theirs = official_forward_chop(lambda p: reference.forward(weights, TINY, p), x, 2, min_size=min_size)
    assert_close(ours, theirs, 1e-3, 1e-6, "chop")


def test_ensemble_is_the_mean_of_8_transforms():
    weights = init_weights(TINY, 2)
    model = accel.model_from_weights(weights, TINY)
    x = np.random.default_rng(2).uniform(0, 255, (9, 13, 3)).astype(np.float32)
    ours = runner.super_resolve(model, x, ensemble=True)
    outs = [reference.forward(weights, TINY, x)]
    outs.append(reference.forward(weights, TINY, x[::-1].copy())[::-1])
    outs.append(reference.forward(weights, TINY, x[:, ::-1].copy())[:, ::-1])
    outs.append(reference.forward(weights, TINY, x[::-1, ::-1].copy())[::-1, ::-1])
    for v, h in [(False, False), (True, False), (False, True), (True, True)]:
        a = x[::-1] if v else x
        a = a[:, ::-1] if h else a
        y = reference.forward(weights, TINY, np.ascontiguousarray(a.transpose(1, 0, 2))).transpose(1, 0, 2)
        y = y[:, ::-1] if h else y
        outs.append(y[::-1] if v else y)
    assert_close(ours, np.mean(outs, axis=0), 1e-3, 1e-6, "ensemble")


def test_python_api_arrays_and_pil(real_model):
    rgb = np.asarray(photo(), np.uint8)
    out = upscale_image(rgb, real_model)
    assert out.dtype == np.uint8 and out.shape == (60, 80, 3)
    gray16 = (np.asarray(photo().convert("L"), np.uint16) * 257)
    out16 = upscale_image(gray16, real_model)
    assert out16.dtype == np.uint16 and out16.shape == (60, 80)
    rgba = np.asarray(photo().convert("RGBA")).copy()
    rgba[..., 3] = 128
    out4 = upscale_image(rgba, real_model)
    assert out4.shape == (60, 80, 4) and (out4[..., 3] == 128).all()      # a flat alpha stays flat
    pil = upscale_image(photo().convert("RGBA"), real_model)
    assert isinstance(pil, Image.Image) and pil.mode == "RGBA" and pil.size == (80, 60)


def test_auto_tiling_plan():
    from accel.run.pipeline import bytes_per_lr_pixel, plan_tile
    config = RCANConfig.official(2)
    assert plan_tile((100, 100), config, 2.0) is None
    tile = plan_tile((1500, 2000), config, 2.0)
    assert tile is not None and tile * tile * bytes_per_lr_pixel(config) <= 2e9


def test_upscale_stays_within_max_memory():
    """Peak RSS of the CLI on a 600×600 image with --max-memory 0.3 stays within 0.3 GB (plus the output
    buffers) over the same process on a tiny image: the tiles planned from the memory model hold."""
    from accel.bench import bench_upscale
    base = bench_upscale("16x16", None, ["--max-memory", "0.3"])
    big = bench_upscale("600x600", None, ["--max-memory", "0.3"])
    assert base["returncode"] == big["returncode"] == 0, (base, big)
    output_buffers = 1200 * 1200 * 3 * 4 * 4 / 1e9     # blend accumulators, the float result, the image
    assert big["peak_rss_gb"] - base["peak_rss_gb"] <= 0.3 + output_buffers, (base, big)


@settings(max_examples=300, deadline=None)
@given(length=st.integers(1, 5000), tile=st.sampled_from([64, 96, 128, 192, 256, 384, 512, 768]),
       overlap=st.integers(0, 32))
def test_fitted_tiles_cover_evenly_with_the_fewest_tiles(length, tile, overlap):
    """Tiles sized to the image: no longer than asked, as few as that size needs, every neighbour
    overlapping by at least `overlap`, and the work (tiles × tile length) within 8 pixels per tile of
    the length plus the overlaps — not a last tile that repeats most of its neighbour."""
    t = tiles.fit_tile(length, tile, overlap)
    starts = tiles.starts(length, t, overlap)
    assert t <= tile and starts[0] == 0 and starts[-1] + t == length
    assert all(b - a <= t - overlap for a, b in zip(starts, starts[1:]))
    fewest = 1 if length <= tile else -(-(length - overlap) // (tile - overlap))
    assert len(starts) == fewest
    assert len(starts) * t <= length + (len(starts) - 1) * overlap + 8 * len(starts)


@settings(max_examples=300, deadline=None)
@given(h=st.integers(1, 3000), w=st.integers(1, 3000), tile=st.sampled_from([None, 64, 128, 768]),
       fixed=st.booleans(), overlap=st.integers(0, 32))
def test_every_plan_covers_the_image_with_tiles_that_fit_its_calls(h, w, tile, fixed, overlap):
    """Any plan: the tiles cover every pixel and stay inside the image, each fits the shape its calls run
    at, and a fixed plan runs every image at one shape (the folder's one compile)."""
    plan = tiles.Plan(tile, overlap, fixed=fixed and tile is not None)
    th, tw = plan.tile_dims((h, w))
    H, W = plan.padded((h, w))
    assert th <= H and tw <= W and th <= h and tw <= w
    covered = np.zeros((h, w), bool)
    for y, x in plan.tiles((h, w)):
        assert 0 <= y and y + th <= h and 0 <= x and x + tw <= w
        covered[y:y + th, x:x + tw] = True
    assert covered.all()
    if plan.fixed:
        assert (H, W) == (tile, tile) and plan.call_shape((h, w)) == plan.call_shape((1, 1))
    elif tile is None:
        assert (th, tw) == (h, w) and (H, W) == (tiles.bucket(h), tiles.bucket(w))


def test_tiles_go_one_per_device_call_on_one_device():
    from accel.run.pipeline import plan_tile, tile_batch
    assert tile_batch() == 1   # one CPU device here: no padded slots in the last call
    # A 2000×1500 photo in 2 GB with the compact model: tiles of 768 (not 512 as in calls of 4 tiles),
    # fitted to 760×680: 6 tiles, 3 % more pixels than the photo.
    config = RCANConfig.compact(2)
    tile = plan_tile((1500, 2000, 3), config, 2.0)
    plan = tiles.Plan(tile, 16)
    assert tile == 768 and plan.tile_dims((1500, 2000)) == (760, 680)
    assert len(plan.tiles((1500, 2000))) == 6


def test_a_bomb_too_large_even_to_open_is_one_line_under_auto(tmp_path, capsys):
    """--model auto reads each file's header to choose a model; a file over twice Pillow's bomb limit makes
    Image.open itself refuse it: one error line for that file, the others done."""
    d = tmp_path / "in"
    d.mkdir()
    Image.new("1", (20000, 20000)).save(d / "bomb.png")   # 400 M pixels in 48 kB
    photo((20, 16)).save(d / "good.png")
    code, err = cli(d, "-o", tmp_path / "out", "--quiet")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {d / 'bomb.png'}: image has 400,000,000"), err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good_x2.png"]
