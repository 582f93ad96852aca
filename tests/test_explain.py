"""The explanation report: its structure, its sources, its numbers come from the run."""
import base64
import html.parser
import io
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import SET5
from PIL import Image

import accel
from accel import report
from accel.pipeline import upscale_image
from accel.report import build_record
from reference import RCANConfig, explain
from reference.metrics import imresize, psnr, quantize

URL = re.compile(r"https?://[^\s)\]]+")
LR = SET5 / "LR_x2" / "butterfly_LRBI_x2.png"


def sections(md):
    return [line for line in md.splitlines() if line.startswith("## ")]


def check_structure(md):
    assert sections(md) == ["## 1. The task", "## 2. The workflow: input → model → output", "## 3. Papers and tools"]
    urls = set(URL.findall(md))
    assert urls <= explain.catalogue_urls(), urls - explain.catalogue_urls()
    assert "https://arxiv.org/pdf/1807.02758" in urls and "https://github.com/yulunzhang/RCAN" in urls


@pytest.mark.parametrize("preset, scale", [("compact", 2), ("official", 4), ("official", 3)])
def test_generic_answer(preset, scale):
    out = subprocess.run([sys.executable, "-m", "accel.report", "--preset", preset, "--scale", str(scale)],
                         capture_output=True, text=True, check=True).stdout
    check_structure(out)
    cfg = RCANConfig.official(scale) if preset == "official" else RCANConfig.compact(scale)
    from reference.weights import official_shapes
    n = sum(int(np.prod(s)) for s in official_shapes(cfg).values())
    assert f"In all: {n:,} parameters" in out   # the stage table adds up to the real parameter count


def test_catalogue_is_the_seed():
    """Exactly the seed's four entries (question.txt), with their links."""
    titles = [s["title"] for s in explain.SOURCES["sources"]]
    assert len(titles) == 4 and any("RCAN" in t for t in titles) and any("HiTSR" in t for t in titles)
    assert explain.catalogue_urls() == {
        "https://arxiv.org/pdf/1807.02758", "https://github.com/yulunzhang/RCAN",
        "http://arxiv.org/pdf/2408.16959v1.pdf", "https://github.com/bia006/hitsr",
        "http://arxiv.org/pdf/2502.03656v1.pdf", "http://arxiv.org/pdf/2401.00261v2.pdf"}


@pytest.fixture(scope="module")
def model():
    return accel.load_model()


def run_record(model, image: Image.Image, name="in.png"):
    run = {}
    out = upscale_image(image, model, record=run)
    return build_record(name, "out.png", model, None, run, out.size), run, out


def test_report_numbers_are_the_runs(model):
    image = Image.open(LR)
    record, run, out = run_record(model, image)
    md = report.render_markdown(record)
    check_structure(md)
    assert "128×128 (RGB) → `out.png`, 256×256" in md
    params = sum(r["params"] for r in record["stages"])
    assert params == sum(v.size for v in accel.model_weights(model).values())
    assert f"In all: {params:,} parameters" in md
    assert f"the accelerated (JAX) run took {run['seconds']:.2f} s" in md
    for stage, seconds in record["trace_seconds"].items():
        assert f"{seconds:.3f} s" in md, stage
    # The self-check PSNR in the report is the one recomputed here.
    hr = np.asarray(image.convert("RGB"))
    small = imresize(hr, 0.5)
    from accel import inference
    sr = quantize(inference.whole(model, small.astype(np.float32)))
    assert f"**model {psnr(hr, sr, 2):.2f} dB**" in md
    assert f"bicubic {psnr(hr, imresize(small, 2), 2):.2f} dB" in md
    assert record["self_check"]["model_psnr"] > record["self_check"]["bicubic_psnr"]


class Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.h2 = [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self.h2 += tag == "h2"


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_cli_writes_md_and_html(tmp_path, mode):
    src = tmp_path / f"img_{mode}.png"
    Image.open(LR).convert(mode).save(src)
    r = subprocess.run([sys.executable, "-m", "accel.upscale", str(src), "--explain", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    md = (tmp_path / f"img_{mode}_x2.md").read_text()
    check_structure(md)
    page = (tmp_path / f"img_{mode}_x2.html").read_text()
    p = Collector()
    p.feed(page)
    assert p.h2 == 3 and len(p.images) == 4
    for src_attr in p.images:
        assert src_attr.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src_attr.split(",", 1)[1]))).load()   # decodes


def test_reports_are_deterministic(model):
    image = Image.open(LR)
    timing = re.compile(r"\d+\.\d+ s\b")
    a = timing.sub("T s", report.render_markdown(run_record(model, image)[0]))
    b = timing.sub("T s", report.render_markdown(run_record(model, image)[0]))
    assert a == b   # only the wall-clock times differ between two runs
    record = run_record(model, image)[0]
    assert report.render_html(report.render_markdown(record), report.figures(record)) == \
        report.render_html(report.render_markdown(record), report.figures(record))
