"""rcan-evaluate on hostile inputs: every error names its file and costs only its own pair; the JSON is
JSON; rcan-report checks its arguments; writing files leaves the umask alone."""
import json
import os
import stat

import numpy as np
import pytest
from conftest import SET5
from PIL import Image

from accel import evaluate, report
from reference.support.files import atomic_write


def folders(tmp_path):
    hr, sr = tmp_path / "hr", tmp_path / "sr"
    hr.mkdir(), sr.mkdir()
    for name in ("bird", "head", "woman"):
        im = Image.open(SET5 / "HR_x2" / f"{name}_HR_x2.png")
        im.save(hr / f"{name}.png")
        im.save(sr / f"{name}.png")
    return hr, sr


def run(capsys, *argv):
    code = evaluate.main([*map(str, argv), "--quiet"])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.startswith("error:")]


def test_a_wrong_sized_pair_is_one_line_and_the_others_are_scored(tmp_path, capsys):
    hr, sr = folders(tmp_path)
    Image.open(sr / "head.png").resize((100, 100)).save(sr / "head.png")
    code, out, errors = run(capsys, "--hr", hr, "--sr", sr, "--scale", "2", "--json")
    result = json.loads(out)
    assert code == 1 and len(errors) == 1 and errors[0].startswith("error: head: HR is")
    assert [r["name"] for r in result["images"]] == ["bird", "woman"]
    assert result["mean"]["psnr"] is None   # identical images: PSNR ∞, written as null (JSON has no Infinity)


def test_identical_images_give_valid_json(tmp_path, capsys):
    hr, sr = folders(tmp_path)
    code, out, errors = run(capsys, "--hr", hr, "--sr", sr, "--scale", "2", "--json")
    result = json.loads(out)   # strict JSON: Python's json would accept Infinity, so check the text too
    assert code == 0 and not errors and "Infinity" not in out and result["images"][0]["psnr"] is None
    assert result["images"][0]["ssim"] == pytest.approx(1.0)


def test_a_16_bit_image_is_refused_by_name_not_clipped(tmp_path, capsys):
    hr, sr = folders(tmp_path)
    grey = np.asarray(Image.open(hr / "bird.png").convert("L"), np.uint16) * 257   # the same picture, 16 bits
    Image.fromarray(grey).save(hr / "bird.png")
    Image.fromarray((grey // 257).astype(np.uint8)).save(sr / "bird.png")
    code, out, errors = run(capsys, "--hr", hr, "--sr", sr, "--scale", "2", "--json")
    assert code == 1 and len(errors) == 1 and "bird.png" in errors[0] and "8-bit" in errors[0]
    assert [r["name"] for r in json.loads(out)["images"]] == ["head", "woman"]


@pytest.mark.parametrize("side", [2, 6, 14])
def test_images_too_small_to_score_are_named(tmp_path, capsys, side):
    hr, sr = folders(tmp_path)
    for folder in (hr, sr):
        Image.new("RGB", (side, side), (90, 20, 200)).save(folder / "tiny.png")
    code, out, errors = run(capsys, "--hr", hr, "--sr", sr, "--scale", "2")
    assert code == 1 and len(errors) == 1 and errors[0].startswith("error: tiny: ") and "too small" in errors[0]
    assert "bird" in out and "woman" in out


def test_model_evaluation_scores_the_good_images_when_one_is_too_small(tmp_path, capsys):
    hr = tmp_path / "hr"
    hr.mkdir()
    Image.open(SET5 / "HR_x2" / "bird_HR_x2.png").crop((0, 0, 64, 48)).save(hr / "bird.png")
    Image.new("RGB", (6, 6)).save(hr / "dot.png")
    code, out, errors = run(capsys, "--hr", hr, "--scale", "2", "--model", "compact", "--json")
    assert code == 1 and len(errors) == 1 and errors[0].startswith("error: dot: ")
    assert [r["name"] for r in json.loads(out)["images"]] == ["bird"]


@pytest.mark.parametrize("size", ["0", "-5"])
def test_report_refuses_a_size_that_is_no_size(size, capsys):
    with pytest.raises(SystemExit) as e:
        report.main(["--size", size])
    assert e.value.code == 2 and "--size must be" in capsys.readouterr().err


def test_atomic_write_leaves_the_umask_alone(tmp_path):
    before = os.umask(0o027)
    try:
        atomic_write(tmp_path / "f.txt", lambda tmp: open(tmp, "w").write("x"))
        assert os.umask(0o027) == 0o027          # not changed under other threads' feet
    finally:
        os.umask(before)
    # the permissions a plain open() gives under the umask the process started with
    import reference.support.files
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o666 & ~reference.support.files.UMASK
