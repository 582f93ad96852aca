"""A folder on one compiled shape (accel/run/folder.py): the count is the constant promised, the outputs
match the per-image path within 50 dB, a bad file does not stop the rest, memory stays flat."""
import json

import numpy as np
import pytest
from conftest import SET5
from PIL import Image

from accel import api, bench, upscale
from accel.run import folder, tiles
from reference import RCANConfig
from reference.metrics import psnr
from reference.weights import init_weights, save_weights

TINY = RCANConfig(scale=2, n_resgroups=1, n_resblocks=1, n_feats=8, reduction=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(path, init_weights(TINY, 0), TINY)
    return str(path)


def photos(folder_path, sizes, source="butterfly_HR_x2.png"):
    im = Image.open(SET5 / "HR_x2" / source).convert("RGB")
    folder_path.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        im.crop((i * 7 % 100, i * 5 % 100, i * 7 % 100 + w, i * 5 % 100 + h)).save(folder_path / f"p{i:03}.png")


def test_a_folder_of_many_sizes_compiles_one_shape(tmp_path, tiny, capsys):
    sizes = [(40, 30), (37, 52), (130, 61), (64, 64), (150, 140), (23, 17), (129, 128), (90, 200)]
    photos(tmp_path / "in", sizes)
    before = {k for k in api._RUN if k[0] == TINY}
    assert upscale.main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", tiny, "--json"]) == 0
    ran = {k for k in api._RUN if k[0] == TINY} - before
    assert {k[4] for k in ran} <= set(folder.shapes()) and len(ran) <= 1, ran    # one shape, known in advance
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 8 and all(r["status"] == "done" and r["tile"] == tiles.FOLDER_TILE for r in rows)
    for (w, h), r in zip(sizes, sorted(rows, key=lambda r: r["input"])):
        assert r["output_size"] == [2 * w, 2 * h]


def test_folder_outputs_match_the_per_image_path(tmp_path):
    """A shipped model on real photos: tiles of 128 overlapping by 16 against whole-image runs."""
    photos(tmp_path / "in", [(200, 150), (140, 260), (90, 70)], source="bird_HR_x2.png")
    common = ["--model", "compact", "--quiet"]
    assert upscale.main([str(tmp_path / "in"), "-o", str(tmp_path / "tiles"), *common]) == 0
    assert upscale.main([str(tmp_path / "in"), "-o", str(tmp_path / "whole"), "--tile", "0", *common]) == 0
    scores = []
    for p in sorted((tmp_path / "whole").iterdir()):
        a = np.asarray(Image.open(p))
        b = np.asarray(Image.open(tmp_path / "tiles" / p.name))
        scores.append(psnr(a, b, 2))
    # Channel attention pools over what each tile sees, so tiles differ slightly from the whole image.
    assert min(scores) >= 50, scores
    print("folder tiles vs whole images, PSNR (dB):", [round(s, 1) for s in scores])


def test_a_bad_file_does_not_stop_the_folder(tmp_path, tiny, capsys):
    photos(tmp_path / "in", [(30, 20), (40, 30), (25, 25)])
    (tmp_path / "in" / "p001.png").write_bytes(b"garbage")
    assert upscale.main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", tiny, "--quiet"]) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p000_x2.png", "p002_x2.png"]
    assert capsys.readouterr().err.count("error: ") == 1


def test_memory_stays_flat_over_200_images(tmp_path, tiny):
    sizes = [(30 + i % 50, 20 + (i * 7) % 60) for i in range(200)]
    photos(tmp_path / "few", sizes[:20])
    photos(tmp_path / "many", sizes)
    few = bench.bench_folder(str(tmp_path / "few"), tiny, [], runs=1)[0]
    many = bench.bench_folder(str(tmp_path / "many"), tiny, [], runs=1)[0]
    assert few["images"] == 20 and many["images"] == 200 and many["compiled_shapes"] == 1
    # A bounded queue: 10× the images, (nearly) the same peak.
    assert many["peak_rss_gb"] - few["peak_rss_gb"] < 0.05, (few, many)
