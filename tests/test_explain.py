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
from accel.explain import figures, sources
from accel.report import build_record
from accel.run.pipeline import upscale_image
from reference import RCANConfig
from reference.metrics import imresize, psnr, quantize

URL = re.compile(r"https?://[^\s)\]]+")
LR = SET5 / "LR_x2" / "butterfly_LRBI_x2.png"


def sections(md):
    return [line for line in md.splitlines() if line.startswith("## ")]


def check_structure(md):
    assert sections(md) == ["## 1. The task", "## 2. The workflow: input → model → output", "## 3. Papers and tools"]
    urls = set(URL.findall(md))
    assert urls <= sources.catalogue_urls(), urls - sources.catalogue_urls()
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
    titles = [s["title"] for s in sources.SOURCES["sources"]]
    assert len(titles) == 4 and any("RCAN" in t for t in titles) and any("HiTSR" in t for t in titles)
    # The seed's links, each over https (the seed writes three arXiv links with http://: the same documents).
    assert sources.catalogue_urls() == {
        "https://arxiv.org/pdf/1807.02758", "https://github.com/yulunzhang/RCAN",
        "https://arxiv.org/pdf/2408.16959v1.pdf", "https://github.com/bia006/hitsr",
        "https://arxiv.org/pdf/2502.03656v1.pdf", "https://arxiv.org/pdf/2401.00261v2.pdf"}


@pytest.fixture(scope="module")
def model():
    return accel.load_model(model="compact")


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
    for stage, seconds in record["trace"]["seconds"].items():
        assert f"{seconds:.3f} s" in md, stage
    # The stage table's shapes are those of the traced region, the region its times were measured on.
    assert "on your whole input (128×128)" in md and "| head conv 3×3 | 128×128×32 |" in md
    # The self-check PSNR in the report is the one recomputed here.
    hr = np.asarray(image.convert("RGB"))
    small = imresize(hr, 0.5)
    from accel.run.runner import super_resolve
    sr = quantize(super_resolve(model, small.astype(np.float32)))
    assert f"**model {psnr(hr, sr, 2):.2f} dB**" in md
    assert f"bicubic {psnr(hr, imresize(small, 2), 2):.2f} dB" in md
    sc = record["self_check"]
    assert sc["model_psnr"] > sc["bicubic_psnr"]
    # Every measured number in the text is the record's.
    sp = sc["spectrum"]
    assert f"the model restores **{100 * sp['model_energy_share']:.1f} %** of the truth's energy, bicubic " \
           f"{100 * sp['bicubic_energy_share']:.1f} %" in md
    assert f"ρ = {sp['model_high_correlation']:.2f} (bicubic {sp['bicubic_high_correlation']:.2f})" in md
    assert f"{sc['best']['bicubic_psnr']:.2f} → {sc['best']['model_psnr']:.2f} dB ({sc['best']['gain']:+.2f} dB)" in md
    assert f"{sc['worst']['bicubic_psnr']:.2f} → {sc['worst']['model_psnr']:.2f} dB" in md
    for row in sc["degradations"]:
        assert f"| {row['input']} | {row['bicubic_psnr']:.2f} dB | {row['model_psnr']:.2f} dB | {row['gain']:+.2f} dB |" in md
    for row in sc["bicubic_loss"]:
        assert f"| ×{row['scale']} | {row['bicubic_psnr']:.2f} dB" in md
    # And the numbers are what they claim: the crop gains are the largest and smallest of all windows.
    from accel.explain.evidence import crop_gains
    imgs = sc["images"]
    windows = crop_gains(imgs["truth"], imgs["bicubic"], imgs["model"], 2, near=imgs["nearest"])
    hard = [w["gain"] for w in windows if w["bicubic_psnr"] <= np.median([w["bicubic_psnr"] for w in windows])]
    assert sc["best"]["gain"] == max(w["gain"] for w in windows) and sc["worst"]["gain"] == min(hard)
    assert sc["degradations"][0]["model_psnr"] == pytest.approx(sc["model_psnr"])
    assert 0 <= sp["bicubic_energy_share"] < sp["model_energy_share"]   # the model fills more of the upper band
    assert sp["bicubic_high_correlation"] < sp["model_high_correlation"] <= 1


def test_figures_are_labelled(model):
    """Read back from the plotting data: axes labels, legends, the Nyquist line, colour bars, titles."""
    record = run_record(model, Image.open(LR))[0]
    figs = report.make_figures(record)
    assert set(figs) == {"self_check", "spectrum", "attention", "feature_maps"}
    ax = figs["spectrum"].axes[0]
    assert "cycles per output pixel" in ax.get_xlabel() and "power" in ax.get_ylabel() and ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == ["truth", "bicubic", "model"] and "Nyquist" in legend[3]
    nyquist = [line for line in ax.lines if "Nyquist" in line.get_label()][0]
    assert set(nyquist.get_xdata()) == {record["self_check"]["spectrum"]["nyquist"]} == {0.25}
    assert ax.get_xlim() == (0, 0.5)
    panels = figs["self_check"].axes
    images = [a for a in panels if a.images and a.get_title()]
    assert len(images) == 14                                      # 2 crops × (input, bicubic, model, truth, 3 errors)
    bars = [a for a in panels if a.get_ylabel().startswith("absolute error")]
    assert len(bars) == 2
    sizes = {tuple(a.images[0].get_array().shape[:2]) for a in images}
    assert sizes == {(48, 48)}                                    # one zoom: every panel shows 48×48 output pixels
    att = figs["attention"]
    ax = att.axes[0]
    assert ax.get_xlabel() == "feature channel" and "RCAB" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["group 1", "group 2", "group 3"]
    assert att.axes[1].get_ylabel().startswith("gate")             # its colour bar
    assert ax.images[0].get_array().shape == (3 * 5, 32)
    with Image.open(io.BytesIO(figures.png(att))) as im:
        assert im.width >= 480
    maps = figs["feature_maps"].axes
    assert [a.get_ylabel() for a in maps if a.get_ylabel()] == ["activation", "activation"]
    assert all("channel" in a.get_title() for a in maps if a.images and a.get_title())


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
    model = [] if mode == "RGB" else ["--model", "compact"]   # the default model once; the others are faster
    r = subprocess.run([sys.executable, "-m", "accel.upscale", str(src), "--explain", "--quiet", *model],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    md = (tmp_path / f"img_{mode}_x2.md").read_text()
    check_structure(md)
    links = re.findall(r"^!\[.+\]\((.+)\)$", md, re.M)
    assert len(links) == 4 and all((tmp_path / link).is_file() for link in links), links   # relative, and there
    assert all(link.startswith(f"img_{mode}_x2_figures/") for link in links)
    assert "http://" not in md
    page = (tmp_path / f"img_{mode}_x2.html").read_text()
    p = Collector()
    p.feed(page)
    assert p.h2 == 3 and len(p.images) == 4 + 2   # the figures and the slider's bicubic | model
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
    pngs = {name: figures.png(fig) for name, fig in report.make_figures(record).items()}
    assert pngs == {name: figures.png(fig) for name, fig in report.make_figures(record).items()}
