"""The evaluation protocol reproduces the official MATLAB results and LR files."""
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import SET5
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.data import read_rgb
from accel.evaluate import EvalError, evaluate_sr, pair
from reference.metrics import imresize, modcrop, psnr, rgb_to_y, ssim

NAMES = ["baby", "bird", "butterfly", "head", "woman"]


def official_results(method="RCAN"):
    """Parse PSNR_SSIM_Results_BI_model.txt: {scale: {"images": {name: (psnr, ssim)}, "mean": (psnr, ssim)}}."""
    out, current = {}, None
    for line in (SET5 / "PSNR_SSIM_Results_BI_model.txt").read_text().splitlines():
        if line.startswith("Method_"):
            current = line.split(":")[1].split(";")[0].strip()
            continue
        if current != method:
            continue
        m = re.match(r"x(\d) \d+ (\w+?)_\w+\.png: PSNR= ([\d.]+) SSIM= ([\d.]+)", line)
        if m:
            out.setdefault(int(m[1]), {"images": {}})["images"][m[2]] = (float(m[3]), float(m[4]))
        m = re.match(r"x(\d): PSNR= ([\d.]+) SSIM= ([\d.]+)", line)
        if m:
            out[int(m[1])]["mean"] = (float(m[2]), float(m[3]))
    return out


@pytest.mark.parametrize("scale", [2, 4])
def test_official_results_reproduced(scale):
    expected = official_results()[scale]
    result = evaluate_sr(SET5 / f"HR_x{scale}", SET5 / f"RCAN_x{scale}", scale)
    assert [r["name"] for r in result["images"]] == NAMES
    for r in result["images"]:
        p, s = expected["images"][r["name"]]
        # The file prints 6 decimals: agreement to 1e-4 dB / 1e-5 shows the same protocol.
        assert abs(r["psnr"] - p) < 1e-4, (r, p)
        assert abs(r["ssim"] - s) < 1e-5, (r, s)
    assert abs(result["mean"]["psnr"] - expected["mean"][0]) < 1e-4
    assert abs(result["mean"]["ssim"] - expected["mean"][1]) < 1e-5


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_lr_regenerated_bit_exact(scale):
    for name in NAMES:
        hr = read_rgb(SET5 / f"HR_x{scale}" / f"{name}_HR_x{scale}.png")
        lr = read_rgb(SET5 / f"LR_x{scale}" / f"{name}_LRBI_x{scale}.png")
        ours = imresize(modcrop(hr, scale), 1 / scale)
        assert ours.shape == lr.shape
        assert int((ours != lr).sum()) == 0, f"{name} x{scale}: {(ours != lr).sum()} values differ"


def test_bicubic_baseline_set5_x2():
    scores = []
    for name in NAMES:
        hr = read_rgb(SET5 / "HR_x2" / f"{name}_HR_x2.png")
        scores.append(psnr(hr, imresize(imresize(hr, 0.5), 2), 2))
    assert abs(np.mean(scores) - 33.674) < 0.005, np.mean(scores)


def test_identical_images():
    img = read_rgb(SET5 / "HR_x2" / "bird_HR_x2.png")
    assert psnr(img, img, 2) == math.inf
    assert ssim(img, img, 2) == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=20)
@given(h=st.integers(1, 40), w=st.integers(1, 40), scale=st.sampled_from([0.25, 0.5, 1 / 3, 2, 3, 4]),
       seed=st.integers(0, 1000))
def test_imresize_properties(h, w, scale, seed):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = imresize(img, scale)
    assert out.dtype == np.uint8 and out.shape == (math.ceil(h * scale), math.ceil(w * scale), 3)
    flat = np.full((h, w, 3), 77, np.uint8)
    assert (imresize(flat, scale) == 77).all()   # weights sum to one, borders replicate


def test_rgb_to_y_matches_matlab_constants():
    y = rgb_to_y(np.array([[[255, 255, 255], [0, 0, 0]]], np.uint8))
    assert y[0, 0] == pytest.approx(235, abs=1e-3) and y[0, 1] == pytest.approx(16, abs=1e-4)


def test_pairing_errors(tmp_path):
    a, b = tmp_path / "hr", tmp_path / "sr"
    a.mkdir(), b.mkdir()
    img = read_rgb(SET5 / "HR_x2" / "bird_HR_x2.png")
    from PIL import Image
    Image.fromarray(img).save(a / "bird_HR.png")
    Image.fromarray(img).save(a / "baby.png")
    Image.fromarray(img[:100]).save(b / "bird_SR.png")
    with pytest.raises(EvalError, match=r"unmatched images: baby \(only in"):
        pair(a, b)
    (a / "baby.png").unlink()
    with pytest.raises(EvalError, match="bird: HR is 288x288, SR is 288x100"):
        evaluate_sr(a, b, 2)


def test_grayscale_hr_is_replicated(tmp_path):
    from PIL import Image
    gray = np.asarray(Image.open(SET5 / "HR_x2" / "bird_HR_x2.png").convert("L"))
    (tmp_path / "hr").mkdir(), (tmp_path / "sr").mkdir()
    Image.fromarray(gray).save(tmp_path / "hr" / "g.png")
    Image.fromarray(np.repeat(gray[..., None], 3, 2)).save(tmp_path / "sr" / "g_x2.png")
    assert evaluate_sr(tmp_path / "hr", tmp_path / "sr", 2)["mean"]["psnr"] == math.inf


def test_cli_prints_the_official_mean():
    out = subprocess.run([sys.executable, "-m", "accel.evaluate", "--hr", str(SET5 / "HR_x2"), "--sr",
                          str(SET5 / "RCAN_x2"), "--scale", "2"], capture_output=True, text=True, check=True)
    assert re.search(r"mean\s+38\.2742\s+0\.9614", out.stdout), out.stdout
    assert "paired: baby_HR_x2.png~baby_RCAN_x2.png" in out.stderr
    js = subprocess.run([sys.executable, "-m", "accel.evaluate", "--hr", str(SET5 / "HR_x2"), "--sr",
                         str(SET5 / "RCAN_x2"), "--scale", "2", "--json"], capture_output=True, text=True, check=True)
    data = json.loads(js.stdout)
    assert data["scale"] == 2 and len(data["images"]) == 5 and round(data["mean"]["psnr"], 4) == 38.2742
    bad = subprocess.run([sys.executable, "-m", "accel.evaluate", "--hr", str(SET5 / "HR_x2"), "--sr",
                          str(SET5 / "LR_x2"), "--scale", "2"], capture_output=True, text=True)
    err = bad.stderr.strip().splitlines()[-1]
    # Every pair of the wrong size: one line naming them, exit 1 (one bad pair alone: tests/test_evaluate_inputs.py).
    assert bad.returncode == 1 and err.startswith("error: no pair could be scored: baby: HR is 512x512, SR is "
                                                  "256x256"), bad.stderr
