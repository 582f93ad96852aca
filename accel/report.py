"""The explanation report: what task the user performs, how input -> model -> output went on this
run, and which sources back it — from a run record, citing only reference/data/sources.json.

    python -m accel.report                     # the generic answer for the shipped compact ×2 config
    python -m accel.report --preset official --scale 4

`python -m accel.upscale img.png --explain` builds the record from a real run (build_record) and
writes <output stem>.md and a self-contained <output stem>.html with the figures embedded. Every
number in the report comes from the record (measured in the run), the model card, or the sources'
own text (the RCAN paper's table). Heavy parts are bounded so that --explain stays cheap on big
photos: the traced NumPy run (stage times, channel attention) and the self-check use a centre crop,
and the report says so.
"""
from __future__ import annotations

import base64
import html
import io
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import reference
from reference import cli, explain
from reference.config import PRESETS, SCALES, RCANConfig
from reference.files import atomic_write
from reference.metrics import imresize, modcrop, psnr, quantize
from reference.weights import read_metadata, stages

from . import inference
from .api import DEFAULT_MODEL, SHIPPED, model_weights, shipped_card

# --- the run record --------------------------------------------------------------------------------

def _centre(a: np.ndarray, size: int) -> tuple[np.ndarray, str]:
    h, w = a.shape[:2]
    if h <= size and w <= size:
        return a, "the whole image"
    ch, cw = min(h, size), min(w, size)
    y, x = (h - ch) // 2, (w - cw) // 2
    return a[y:y + ch, x:x + cw], f"a centre crop of {cw}×{ch} pixels"


def weights_info(weights_path, shipped: str | None = None) -> dict:
    """What the report says about the weights that ran: a file, or a shipped model (with its card)."""
    if weights_path is None:
        name = shipped or DEFAULT_MODEL
        card, path = shipped_card(name), SHIPPED[name]
        steps = card["training"].get("steps", "?") if card else "?"
        info = {"label": f"the shipped {name} RCAN ×2 (trained by this project)",
                "description": f"accel/weights/{path.name}, {steps} training steps on T91 + BSD200; "
                               f"see accel/weights/{path.stem}.md.", "converted": False}
        if card:
            info["card"] = {"psnr": card["set5_x2"]["psnr"], "bicubic_psnr": card["set5_x2"]["bicubic_psnr"]}
        return info
    path = Path(weights_path)
    try:
        meta = read_metadata(path) if path.suffix == ".safetensors" else {}
    except ValueError:
        meta = {}
    src = meta.get("source_name") or path.name
    return {"label": path.name, "description": f"weights from {src}"
            + (f" ({meta['source_layout']})" if meta.get("source_layout") else ""),
            "converted": path.suffix != ".safetensors" or bool(meta.get("source_layout"))}


def build_record(src, dst, model, weights_path, run: dict, out_size, shipped: str | None = None) -> dict:
    config = model.config
    s = config.scale
    lr = run["lr_float"]
    h, w = lr.shape[:2]
    record = {"config": config, "scale": s, "weights": weights_info(weights_path, shipped),
              "input": {"name": Path(src).name, "width": w, "height": h, "mode": run["mode"]},
              "output": {"name": Path(dst).name, "width": out_size[0], "height": out_size[1]},
              "stages": stages(config, h, w), "seconds": run["seconds"], "tile": run.get("tile")}

    # Traced NumPy run: stage times and channel-attention gates (bounded: official-size models are slow).
    budget = 256 if config.n_feats * config.n_resgroups * config.n_resblocks <= 32 * 3 * 5 * 2 else 48
    crop, region = _centre(lr, budget)
    trace: dict = {}
    reference.forward(model_weights(model), config, crop, trace=trace)
    record["trace_seconds"] = trace["seconds"]
    record["trace_region"] = f"{region} of the input" if region != "the whole image" else "the whole input"
    record["attention"] = trace["attention"]
    record["attention_summary"] = explain.attention_summary(trace["attention"])

    # Self-check: the input as ground truth, shrunk with MATLAB bicubic, enlarged by model and bicubic.
    hr, region = _centre(quantize(lr), 256)
    hr = modcrop(hr, s)
    if min(hr.shape[:2]) >= 2 * s + 2:
        small = imresize(hr, 1 / s)
        model_sr = quantize(inference.whole(model, small.astype(np.float32)))
        record["self_check"] = {"region": region if region != "the whole image" else "your whole image",
                                "hr_width": hr.shape[1], "hr_height": hr.shape[0],
                                "model_psnr": psnr(hr, model_sr, s), "bicubic_psnr": psnr(hr, imresize(small, s), s)}

    # Figure material: a centre crop of the input, its bicubic enlargement, the model's output there.
    crop, _ = _centre(lr, 128)
    ch, cw = crop.shape[:2]
    y, x = (h - ch) // 2, (w - cw) // 2
    bic = imresize(quantize(crop), s).astype(np.float32)
    sr = np.clip(run["sr_float"][s * y:s * (y + ch), s * x:s * (x + cw)], 0, 255)
    record["images"] = {"lr": crop, "bicubic": bic, "sr": sr}
    return record


def write_reports(src, dst, model, weights_path, run: dict, shipped: str | None = None,
                  overwrite: bool = True) -> tuple[Path, Path]:
    """<output stem>.md and .html beside the output; returns their paths. overwrite=False: an existing
    report is kept (FileExistsError)."""
    with Image.open(dst) as im:
        size = im.size
    record = build_record(src, dst, model, weights_path, run, size, shipped)
    md = render_markdown(record)
    page = render_html(md, figures(record))
    dst = Path(dst)
    md_path, html_path = dst.with_suffix(".md"), dst.with_suffix(".html")
    atomic_write(md_path, lambda tmp: Path(tmp).write_text(md, encoding="utf-8"), overwrite=overwrite)
    atomic_write(html_path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"), overwrite=overwrite)
    return md_path, html_path


# --- Markdown --------------------------------------------------------------------------------------

def _fmt_shape(shape):
    return "×".join(str(v) for v in shape)


def _num(n):
    return f"{n:,}"


def render_markdown(record: dict) -> str:
    """The report: title, then one section each for the task, the workflow and the sources."""
    cfg = RCANConfig.from_json(record["config"]) if isinstance(record["config"], str) else record["config"]
    inp, w = record.get("input"), record["weights"]
    lines = [f"# Super-resolution ×{cfg.scale} with RCAN: how " + ("this run works" if inp else "it works"), "",
             f"Weights that ran: **{w['label']}** — {w['description']}", ""]
    for section in (_section_task, _section_workflow, _section_sources):
        lines += section(record, cfg)
    return "\n".join(lines)


def _section_task(record: dict, cfg: RCANConfig) -> list[str]:
    """1. What the user does: SISR ×s, why it works, the paper's gains and the self-check."""
    lines: list[str] = []
    inp, out, w = record.get("input"), record.get("output"), record["weights"]
    s, paper = cfg.scale, explain.SOURCES["rcan_paper_table"]
    lines.append("## 1. The task")
    lines.append("")
    lines.append(f"You are doing **single-image super-resolution (SISR) ×{s}**: from one low-resolution image, "
                 f"estimate the image with {s}× the width and {s}× the height. The model was trained for the "
                 "bicubic (BI) degradation: high-resolution images shrunk with bicubic interpolation.")
    if inp:
        lines.append("")
        lines.append(f"This run: `{inp['name']}`, {inp['width']}×{inp['height']} ({inp['mode']}) → "
                     f"`{out['name']}`, {out['width']}×{out['height']}.")
    lines.append("")
    lines.append(f"Why a moderate scale works so well: at ×{s} there are {s * s} output pixels to fill per "
                 "input pixel, but most of the image's information — edges, shapes, colours, the lower "
                 f"frequencies — is still in the input. Bicubic interpolation keeps that band and leaves the upper "
                 f"band of frequencies empty, which looks soft. The network has learned, from many image pairs, to "
                 "restore that upper band: sharp edges and fine texture that are consistent with the input.")
    lines.append("")
    lines.append("The RCAN paper's gain over bicubic (Set5, PSNR on Y, BI degradation):")
    lines.append("")
    lines.append("| scale | bicubic | RCAN | gain |")
    lines.append("|---|---|---|---|")
    for k in ("2", "3", "4", "8"):
        b, r = paper["bicubic"][k], paper["rcan"][k]
        lines.append(f"| ×{k} | {b:.2f} dB | {r:.2f} dB | +{r - b:.2f} dB |")
    lines.append("")
    lines.append("The gain is largest at ×2–×4: the smaller the scale, the more of the answer is in the input.")
    sc = record.get("self_check")
    if sc:
        lines.append("")
        lines.append(f"**Self-check on your image.** We shrank {sc['region']} ×{s} with the MATLAB-exact bicubic "
                     f"({sc['hr_width']}×{sc['hr_height']} → {sc['hr_width'] // s}×{sc['hr_height'] // s}), "
                     "enlarged it back, and compared with the original (PSNR on Y, "
                     f"{s}-pixel border shaved): **model {sc['model_psnr']:.2f} dB**, bicubic "
                     f"{sc['bicubic_psnr']:.2f} dB — the model is {sc['model_psnr'] - sc['bicubic_psnr']:+.2f} dB "
                     "closer to the truth than bicubic.")
    card = w.get("card")
    if card:
        lines.append("")
        lines.append(f"These weights on Set5 ×{s} (from the model card, official protocol): "
                     f"{card['psnr']:.2f} dB (bicubic {card['bicubic_psnr']:.2f} dB; the official RCAN reaches "
                     f"{paper['rcan'][str(s)]:.2f} dB).")
    lines.append("")

    return lines


def _section_workflow(record: dict, cfg: RCANConfig) -> list[str]:
    """2. Input -> each stage (shapes, parameters, compute, time) -> output, and channel attention."""
    lines: list[str] = []
    inp, out = record.get("input"), record.get("output")
    lines.append("## 2. The workflow: input → model → output")
    lines.append("")
    hh, ww = (inp["height"], inp["width"]) if inp else (record["generic_size"], record["generic_size"])
    lines.append(f"Input: {ww}×{hh} RGB values in 0..255"
                 + (f" ({inp['mode']} converted to RGB for the model)" if inp and inp["mode"] not in ("RGB",) else "")
                 + ". Each stage, with this run's tensor shape (H×W×channels), its parameters and its share of the "
                 "compute" + (", and the time it took in the traced NumPy reference run" if record.get("trace_seconds")
                              else "") + ":")
    lines.append("")
    lines.append("| stage | output shape | parameters | share of compute |" + (" time |" if record.get("trace_seconds") else ""))
    lines.append("|---|---|---|---|" + ("---|" if record.get("trace_seconds") else ""))
    ts = record.get("trace_seconds") or {}
    for row, key in zip(record["stages"], explain.TRACE_KEYS):
        t = ""
        if ts:
            t = f" {ts[key]:.3f} s |" if key in ts else " (in body) |"
        lines.append(f"| {row['stage']} | {_fmt_shape(row['shape'])} | {_num(row['params'])} | "
                     f"{100 * row['share']:.1f}% |{t}")
    total_p = sum(r["params"] for r in record["stages"])
    total_m = sum(r["macs"] for r in record["stages"])
    lines.append("")
    lines.append(f"In all: {_num(total_p)} parameters, {total_m / 1e9:.2f} G multiply-adds for this input"
                 + (f"; the accelerated (JAX) run took {record['seconds']:.2f} s" if record.get("seconds") else "")
                 + (f" in tiles of {record['tile']}×{record['tile']}" if record.get("tile") else "") + ".")
    if record.get("trace_region"):
        lines.append(f"(The traced reference run, for the stage times and the attention statistics, used "
                     f"{record['trace_region']}.)")
    lines.append("")
    lines.append("- **Mean shift** subtracts the training set's mean colour so the network works on zero-centred values.")
    lines.append(f"- **Head**: one 3×3 conv lifts RGB to {cfg.n_feats} feature channels.")
    lines.append(f"- **Residual in residual**: {cfg.n_resgroups} residual groups, each {cfg.n_resblocks} residual "
                 "channel attention blocks (conv → ReLU → conv → channel attention, plus a skip) and a closing conv, "
                 "with a short skip around each group and a long skip around the whole body. The skips carry the "
                 "low frequencies straight through, so the blocks only learn the missing detail.")
    lines.append(f"- **Channel attention** pools each channel over the image, squeezes {cfg.n_feats} → "
                 f"{cfg.squeeze} → {cfg.n_feats} channels and gates each channel with a sigmoid: it reweights features "
                 "by how useful they are for this image.")
    steps = " then ".join(f"×{r}" for r in cfg.upsample_steps)
    lines.append(f"- **Upsampler** ({steps}): a conv makes r² times the channels and pixel shuffle rearranges "
                 "them into an r-times larger image (sub-pixel convolution); then the **tail** conv maps features "
                 "back to RGB and the mean is added back.")
    if out:
        lines.append(f"- **Output**: {out['width']}×{out['height']}, saved like the official code "
                     "(clamped to 0..255, rounded half to even)" + (f", back to {inp['mode']}" if inp['mode'] != "RGB"
                                                                    else "") + ".")
    att = record.get("attention_summary")
    if att:
        lines.append("")
        lines.append("What channel attention did on this image (gates in 0..1, mean over each group's RCABs):")
        lines.append("")
        lines.append("| group | mean gate | range | most boosted channels | most damped channels |")
        lines.append("|---|---|---|---|---|")
        for a in att:
            boost = ", ".join(f"#{i} ({v:.2f})" for i, v in a["boosted"])
            damp = ", ".join(f"#{i} ({v:.2f})" for i, v in a["damped"])
            lines.append(f"| {a['group'] + 1} | {a['mean']:.3f} | {a['min']:.2f}–{a['max']:.2f} | {boost} | {damp} |")
    lines.append("")

    return lines


def _section_sources(record: dict, cfg: RCANConfig) -> list[str]:
    """3. The papers and tools behind the run, from the sources catalogue."""
    lines: list[str] = []
    inp, w = record.get("input"), record["weights"]
    lines.append("## 3. Papers and tools")
    lines.append("")
    for src in explain.SOURCES["sources"]:
        links = ", ".join(f"[{k}]({u})" for k, u in src["links"].items())
        lines.append(f"- **{src['title']}** — {links}. {src['relation']}")
    lines.append("")
    if inp:
        lines.append("Tools that ran here (this project): `accel.upscale` (JAX + flax.nnx RCAN, the run), "
                     "`reference.rcan` (the NumPy reference, traced for the stage times and attention), "
                     "`reference.metrics` (MATLAB-exact bicubic and PSNR for the self-check)"
                     + (", `weights_convert` (the checkpoint, read without torch)" if w.get("converted") else "")
                     + ".")
    else:
        lines.append("Tools in this project: `python -m accel.upscale IMAGE --explain` (runs RCAN and writes this "
                     "report for your image), `reference/rcan.py` (the NumPy reference, read it next to the paper), "
                     "`python -m accel.evaluate` (the paper's PSNR/SSIM protocol), `python -m weights_convert` "
                     "(official checkpoints without torch).")
    lines.append("")
    return lines


# --- figures (Pillow + numpy) ----------------------------------------------------------------------

def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", optimize=False)
    return buf.getvalue()


def fig_crops(lr, bicubic, sr, scale, size=96) -> bytes:
    """Input (nearest-neighbour zoom), bicubic and model, the same region at the same zoom, side by side."""
    h, w = lr.shape[:2]
    ch, cw = min(size, h), min(size, w)
    y, x = (h - ch) // 2, (w - cw) // 2
    crop_lr = Image.fromarray(quantize(lr[y:y + ch, x:x + cw])).resize((cw * scale, ch * scale), Image.NEAREST)
    parts = [np.asarray(crop_lr), quantize(bicubic[y * scale:(y + ch) * scale, x * scale:(x + cw) * scale]),
             quantize(sr[y * scale:(y + ch) * scale, x * scale:(x + cw) * scale])]
    gap = np.full((ch * scale, 4, 3), 255, np.uint8)
    return _png(np.concatenate([parts[0], gap, parts[1], gap, parts[2]], axis=1))


def _colormap(v: np.ndarray) -> np.ndarray:
    """0..1 -> a dark-blue .. yellow ramp (no plotting library needed)."""
    v = np.clip(v, 0, 1)[..., None]
    lo, mid, hi = np.array([20, 20, 80.0]), np.array([200, 40, 90.0]), np.array([255, 230, 60.0])
    return quantize(np.where(v < 0.5, lo + (mid - lo) * (v * 2), mid + (hi - mid) * (v * 2 - 1)))


def fig_detail(bicubic, sr) -> bytes:
    """Where the model added detail over bicubic: |model − bicubic| on luminance, as a heat map."""
    d = np.abs((sr - bicubic) @ np.array([0.299, 0.587, 0.114]))
    top = np.percentile(d, 99.5) or 1.0
    return _png(_colormap(d / top))


def radial_spectrum(img: np.ndarray, bins: int = 64) -> np.ndarray:
    """Mean log power of the luminance spectrum in rings of radius 0..Nyquist."""
    y = img @ np.array([0.299, 0.587, 0.114])
    f = np.abs(np.fft.fftshift(np.fft.fft2(y - y.mean()))) ** 2
    h, w = y.shape
    yy, xx = np.indices((h, w))
    r = np.hypot((yy - h // 2) / (h / 2), (xx - w // 2) / (w / 2))
    idx = np.minimum((r * bins).astype(int), bins)
    sums = np.bincount(idx.ravel(), f.ravel(), bins + 1)[:bins]
    counts = np.maximum(np.bincount(idx.ravel(), minlength=bins + 1)[:bins], 1)
    return np.log10(sums / counts + 1e-12)


def fig_spectrum(bicubic, sr) -> bytes:
    """Radial power spectrum: bicubic (blue) vs model (orange); the model lifts the upper band."""
    b, m = radial_spectrum(bicubic), radial_spectrum(sr)
    W, H, pad = 480, 260, 36
    im = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(im)
    lo, hi = min(b.min(), m.min()), max(b.max(), m.max())
    to_xy = lambda i, v, n: (pad + (W - 2 * pad) * i / (n - 1), H - pad - (H - 2 * pad) * (v - lo) / (hi - lo or 1))
    d.rectangle([pad, pad, W - pad, H - pad], outline=(160, 160, 160))
    for series, colour in ((b, (40, 90, 200)), (m, (230, 120, 20))):
        d.line([to_xy(i, v, len(series)) for i, v in enumerate(series)], fill=colour, width=2)
    d.text((pad, 8), "log power vs spatial frequency (0 .. Nyquist)", fill=(0, 0, 0))
    d.text((W - pad - 150, pad + 6), "bicubic", fill=(40, 90, 200))
    d.text((W - pad - 150, pad + 20), "RCAN", fill=(230, 120, 20))
    return _png(np.asarray(im))


def fig_attention(att: np.ndarray, cell: int = 14) -> bytes:
    """Groups (rows) × blocks (columns): the spread (std over channels) of each RCAB's attention gates."""
    spread = att.std(axis=2)
    v = (spread - spread.min()) / (np.ptp(spread) or 1.0)
    img = _colormap(v)
    return _png(np.kron(img, np.ones((cell, cell, 1), np.uint8)))


def figures(record: dict) -> dict[str, bytes]:
    figs = {}
    imgs = record.get("images")
    if imgs:
        s = record["scale"]
        figs["crops"] = fig_crops(imgs["lr"], imgs["bicubic"], imgs["sr"], s)
        figs["detail"] = fig_detail(imgs["bicubic"], imgs["sr"])
        figs["spectrum"] = fig_spectrum(imgs["bicubic"], imgs["sr"])
    if record.get("attention") is not None:
        figs["attention"] = fig_attention(np.asarray(record["attention"]))
    return figs


CAPTIONS = {
    "crops": "Centre crop at the same zoom: input (nearest neighbour) | bicubic | RCAN.",
    "detail": "Detail the model added over bicubic: |RCAN − bicubic| on luminance (bright = more).",
    "spectrum": "Radial power spectrum of the bicubic and the RCAN output: RCAN restores the upper band.",
    "attention": "Channel attention, groups (rows) × RCABs (columns): spread of the gates (bright = more selective).",
}


# --- HTML ------------------------------------------------------------------------------------------

def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)


def markdown_to_html(md: str) -> list[str]:
    """The small Markdown subset the report uses: headings, paragraphs, bullet lists, tables."""
    out, in_list, table = [], False, None
    for line in md.splitlines() + [""]:
        if table is not None and not line.startswith("|"):
            rows = [[c.strip() for c in r.strip("|").split("|")] for r in table if not set(r) <= set("|-")]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in rows[0]) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
                       + "</table>")
            table = None
        if in_list and not line.startswith("- "):
            out.append("</ul>")
            in_list = False
        if line.startswith("|"):
            table = (table or []) + [line]
        elif line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(line[2:])}</li>")
        elif line.startswith("## "):
            out.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{_inline(line[2:])}</h1>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    return out


def render_html(md: str, figs: dict[str, bytes]) -> str:
    body = markdown_to_html(md)
    # Figures go into the section they illustrate: crops/detail/spectrum in 1, attention in 2.
    placement = {"## 2.": ["crops", "detail", "spectrum"], "## 3.": ["attention"]}
    html_lines = []
    for part in body:
        for marker, names in placement.items():
            if part.startswith("<h2>") and part[4:].startswith(marker[3:]):
                for name in names:
                    if name in figs:
                        data = base64.b64encode(figs[name]).decode()
                        html_lines.append(f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
                                          f"<figcaption>{html.escape(CAPTIONS[name])}</figcaption></figure>")
        html_lines.append(part)
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.45}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
             "img{image-rendering:pixelated;max-width:100%}figure{margin:1em 0}")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>RCAN run explained</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(html_lines) + "\n</body></html>\n")


# --- the generic answer, without an image ----------------------------------------------------------

def generic_record(config: RCANConfig, size: int = 64, label: str = "") -> dict:
    return {"config": config, "scale": config.scale, "generic_size": size, "stages": stages(config, size, size),
            "weights": {"label": label or f"RCAN G{config.n_resgroups}R{config.n_resblocks}F{config.n_feats}",
                        "description": "architecture only (no image, no weights ran); "
                                       f"shapes for a {size}×{size} input."}}


def main(argv=None) -> int:
    ap = cli.parser("python -m accel.report", __doc__)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="compact", help="model size (default compact)")
    ap.add_argument("--scale", type=int, default=2, choices=SCALES, help="upscaling factor")
    ap.add_argument("--size", type=int, default=64, help="input size for the shape table")
    args = ap.parse_args(argv)
    print(render_markdown(generic_record(PRESETS[args.preset](args.scale), args.size, f"{args.preset} preset")))
    return 0


entry = cli.entry(main)   # the console script

if __name__ == "__main__":
    sys.exit(cli.run(main))
