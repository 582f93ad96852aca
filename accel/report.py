"""The explanation report: what task the user performs, how input -> model -> output went on this
run, and which sources back it — from a run record, citing only accel/explain/sources.json.

    python -m accel.report                     # the generic answer for the shipped deep ×2 config
    python -m accel.report --preset official --scale 4

`python -m accel.upscale img.png --explain` builds the record from a real run (build_record) and
writes <output stem>.md (its figures as PNG files in <output stem>_figures/) and a self-contained
<output stem>.html with the figures embedded and a before/after slider. Every
number in the report comes from the record (measured in the run), the model card, or the sources'
own text (the RCAN paper's table); the measurements on the image are in accel/explain/evidence.py, the
figures (matplotlib) in accel/explain/figures.py. Heavy parts are bounded so that --explain stays cheap on big
photos: the traced NumPy run (stage times, channel attention) and the self-check use a centre crop,
and the report says so.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import reference
from reference.config import PRESETS, RCANConfig
from reference.metrics import imresize, modcrop, quantize
from reference.support import cli
from reference.support.files import atomic_write
from reference.weights import read_metadata, stages

from . import options
from .api import DEFAULT_MODEL, SHIPPED, model_weights, shipped_card
from .degrade.chain import CHAINS
from .explain import evidence, sources

# Multiply-adds of the traced NumPy run (a few seconds on a CPU core): its region is the centre square
# that costs about this much, at most 256 pixels a side (compact model: 256, deep: 72, official: 40).
TRACE_MACS = 25e9

# --- the run record --------------------------------------------------------------------------------

def _centre(a: np.ndarray, size: int) -> tuple[np.ndarray, str]:
    h, w = a.shape[:2]
    if h <= size and w <= size:
        return a, "the whole image"
    ch, cw = min(h, size), min(w, size)
    y, x = (h - ch) // 2, (w - cw) // 2
    return a[y:y + ch, x:x + cw], f"a centre crop of {ch}×{cw} pixels"


def _degradation(meta: dict) -> str:
    """The degradation a weights file was trained for: "bicubic", or a chain of accel/degrade/chain.py ("real",
    "photo")."""
    try:
        return json.loads(meta.get("train_config", "{}")).get("degradation", "bicubic")
    except ValueError:
        return "bicubic"


def _training_data(meta: dict) -> str:
    """What a weights file says it was trained on (accel.train records it); the paper's set for the
    official checkpoints."""
    if meta.get("data"):
        folders = " + ".join(Path(d).name for d in meta["data"].split())
        chain = _degradation(meta)
        how = (f"made into blurred, noisy, resized and JPEG-compressed inputs (accel/degrade/chain.py, the {chain} "
               f"chain; {CHAINS[chain].clean:.0%} kept clean bicubic)" if chain in CHAINS
               else "shrunk with bicubic for the input")
        return f"{meta.get('n_train_images', '?')} images ({folders}), {how}"
    if meta.get("source_layout"):
        return "DIV2K's 800 training images, per the RCAN paper (official checkpoint)"
    return "not recorded in the weights file"


def weights_info(weights_path, shipped: str | None = None) -> dict:
    """What the report says about the weights that ran: a file, or a shipped model (with its card)."""
    if weights_path is None:
        name = shipped or DEFAULT_MODEL
        card, path = shipped_card(name), SHIPPED[name]
        meta = read_metadata(path)
        info = {"label": f"the shipped {name} RCAN ×2 (trained by this project)",
                "description": f"accel/weights/{path.name}, {meta.get('steps', '?')} training steps; "
                               f"see accel/weights/{path.stem}.md.", "converted": False,
                "training_data": _training_data(meta), "degradation": _degradation(meta)}
        if card:
            info["card"] = {"psnr": card["set5_x2"]["psnr"], "bicubic_psnr": card["set5_x2"]["bicubic_psnr"]}
        return info
    path = Path(weights_path)
    try:
        meta = read_metadata(path) if path.suffix == ".safetensors" else {}
    except ValueError:
        meta = {}
    converted = path.suffix != ".safetensors" or bool(meta.get("source_layout"))
    src = meta.get("source_name") or path.name
    return {"label": path.name, "description": f"weights from {src}"
            + (f" ({meta['source_layout']})" if meta.get("source_layout") else ""),
            "converted": converted,
            "training_data": _training_data(meta if not converted else {**meta, "source_layout": "official"})}


def build_record(src, dst, model, weights_path, run: dict, out_size, shipped: str | None = None,
                 choice: dict | None = None, precision: dict | None = None) -> dict:
    """Everything the report says about this run: sizes, stages, the traced reference run, the self-check
    measurements (accel/explain/evidence.py) and the images its figures show."""
    config = model.config
    s = config.scale
    lr = run["lr_float"]
    h, w = lr.shape[:2]
    record = {"config": config, "scale": s, "weights": weights_info(weights_path, shipped),
              "input": {"name": Path(src).name, "height": h, "width": w, "mode": run["mode"]},
              "output": {"name": Path(dst).name, "height": out_size[1], "width": out_size[0]},
              "stages": stages(config, h, w), "seconds": run["seconds"], "tile": run.get("tile")}
    if choice:
        record["choice"] = choice
    if precision:
        record["precision"] = precision

    # Traced NumPy run: stage times, channel-attention gates and feature maps, on a region small enough for
    # official-size models; the stage table shows the shapes of that same region.
    per_pixel = sum(r["macs"] for r in stages(config, 8, 8)) / 64
    side = min(256, max(32, int(math.sqrt(TRACE_MACS / per_pixel)) // 8 * 8))
    crop, region = _centre(lr, side)
    trace: dict = {}
    reference.forward(model_weights(model), config, crop, trace=trace)
    record["trace"] = {"region": region, "height": crop.shape[0], "width": crop.shape[1],
                       "stages": stages(config, *crop.shape[:2]), "seconds": trace["seconds"]}
    att = np.asarray(trace["attention"])
    record["attention"] = att
    record["attention_summary"] = sources.attention_summary(att)
    per_channel = att.mean(axis=1)                                   # [groups, channels], over each group's RCABs
    record["feature_maps"] = []
    for label, flat in (("most boosted", per_channel.argmax()), ("most damped", per_channel.argmin())):
        g, c = np.unravel_index(flat, per_channel.shape)
        record["feature_maps"].append({"label": label, "group": int(g), "channel": int(c),
                                       "gate": float(per_channel[g, c]), "map": trace[f"group_{g}"][..., c]})

    # Self-check: (a centre region of) the input as the truth, shrunk and enlarged back.
    truth, region = _centre(quantize(lr), evidence.SELF_CHECK)
    truth = modcrop(truth, s)
    if min(truth.shape[:2]) >= 2 * s + 2:
        record["self_check"] = {"region": "your whole image" if region == "the whole image" else region,
                                **evidence.self_check(model, truth, s)}

    # The before/after slider: a centre crop of this run's input, enlarged by bicubic and by the model.
    crop, _ = _centre(lr, 128)
    ch, cw = crop.shape[:2]
    y, x = (h - ch) // 2, (w - cw) // 2
    record["images"] = {"bicubic": imresize(quantize(crop), s),
                        "model": quantize(run["sr_float"][s * y:s * (y + ch), s * x:s * (x + cw)])}
    return record


def report_paths(dst) -> tuple[Path, Path, Path]:
    """Where --explain writes for an output: <stem>.md, <stem>.html and the Markdown's figures folder."""
    dst = Path(dst)
    return dst.with_suffix(".md"), dst.with_suffix(".html"), dst.parent / f"{dst.stem}_figures"


def write_reports(src, dst, model, weights_path, run: dict, shipped: str | None = None,
                  overwrite: bool = True, choice: dict | None = None,
                  precision: dict | None = None) -> tuple[Path, Path]:
    """<output stem>.md with its figures as PNG files in <output stem>_figures/, and a self-contained
    <output stem>.html; returns the paths of the two reports. overwrite=False: an existing report or
    figure is kept (FileExistsError)."""
    with Image.open(dst) as im:
        size = im.size
    record = build_record(src, dst, model, weights_path, run, size, shipped, choice, precision)
    md_path, html_path, folder = report_paths(dst)
    from .explain import figures  # (matplotlib, the `report` extra: only reports need it)
    pngs = {name: figures.png(fig) for name, fig in make_figures(record).items()}
    links = {name: f"{folder.name}/{name}.png" for name in pngs}
    md = render_markdown(record, links)
    page = render_html(md, {links[n]: data for n, data in pngs.items()}, record.get("images"))
    folder.mkdir(exist_ok=True)
    for name, data in pngs.items():
        atomic_write(folder / f"{name}.png", lambda tmp, data=data: Path(tmp).write_bytes(data), overwrite=overwrite)
    atomic_write(md_path, lambda tmp: Path(tmp).write_text(md, encoding="utf-8"), overwrite=overwrite)
    atomic_write(html_path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"), overwrite=overwrite)
    return md_path, html_path


# --- Markdown --------------------------------------------------------------------------------------

def _hw(h, w) -> str:
    return f"{h}×{w}"


def _fmt_shape(shape):
    return "×".join(str(v) for v in shape)


def _num(n):
    return f"{n:,}"


def _figure(links: dict, name: str) -> list[str]:
    return [f"![{CAPTIONS[name]}]({links[name]})", ""] if name in links else []


def render_markdown(record: dict, links: dict | None = None) -> str:
    """The report: title, then one section each for the task, the workflow and the sources. links: the
    relative path of each figure (make_figures' names) to show."""
    cfg = RCANConfig.from_json(record["config"]) if isinstance(record["config"], str) else record["config"]
    inp, w = record.get("input"), record["weights"]
    lines = [f"# Super-resolution ×{cfg.scale} with RCAN: how " + ("this run works" if inp else "it works"), "",
             f"Weights that ran: **{w['label']}** — {w['description']}", ""]
    ch = record.get("choice")
    if ch:
        lines += [f"Model: **{ch['model']}** — strength {ch['strength']:g} on the scale from the bicubic-trained "
                  f"weights (0) to the real-photo ones (1). Why: {ch['reason']}.", ""]
    if record.get("precision"):
        p = record["precision"]
        lines += [f"Precision: **{p['dtype']}** — {p['reason']}.", ""]
    lines += ["Sizes are given as height×width (H×W) in pixels.", ""]
    for section in (_section_task, _section_workflow, _section_sources):
        lines += section(record, cfg, links or {})
    return "\n".join(lines)


def _section_task(record: dict, cfg: RCANConfig, links: dict) -> list[str]:
    """1. What the user does, why it works (measured on the user's image), and where it stops working."""
    inp, out, w = record.get("input"), record.get("output"), record["weights"]
    s, paper = cfg.scale, sources.SOURCES["rcan_paper_table"]
    lines = ["## 1. The task", "",
             f"You are doing **single-image super-resolution (SISR) ×{s}**: from one low-resolution image, "
             f"estimate the image with {s}× the height and {s}× the width. "
             + ("The model was fine-tuned for photos as people have them: high-resolution images blurred, "
                "resized, made noisy and JPEG-compressed (in random amounts) as they were shrunk, "
                "the target kept clean." if w.get("degradation") in CHAINS else
                "The model was trained for the bicubic (BI) degradation: high-resolution images shrunk with "
                "bicubic interpolation."), ""]
    if inp:
        lines += [f"This run: `{inp['name']}`, {_hw(inp['height'], inp['width'])} ({inp['mode']}) → "
                  f"`{out['name']}`, {_hw(out['height'], out['width'])}.", ""]
    lines += [f"Why a moderate scale works so well: at ×{s} there are {s * s} output pixels to fill per input "
              "pixel, but most of the image's information — edges, shapes, colours, the lower frequencies — is "
              f"still in the input. An image of the input's size can hold no detail finer than its Nyquist limit, "
              f"0.5 cycles per input pixel = {0.5 / s:.3f} cycles per output pixel. Bicubic interpolation keeps "
              "the band below that limit and leaves the band above it nearly empty, which looks soft; the "
              "network has learned, from many image pairs, to fill part of that upper band.", "",
              "The RCAN paper's gain over bicubic (Set5, PSNR on Y, BI degradation):", "",
              "| scale | bicubic | RCAN | gain |", "|---|---|---|---|"]
    for k in ("2", "3", "4", "8"):
        b, r = paper["bicubic"][k], paper["rcan"][k]
        lines.append(f"| ×{k} | {b:.2f} dB | {r:.2f} dB | +{r - b:.2f} dB |")
    lines += ["", "The gain is largest at ×2–×4: the smaller the scale, the more of the answer is in the input.", ""]
    sc = record.get("self_check")
    if sc:
        lines += _self_check(sc, s, links)
        lines += _frequency(sc["spectrum"], s, links)
        lines += _scales(sc, s, paper)
        lines += _limits(sc, w)
    card = w.get("card")
    if card:
        lines += [f"These weights on Set5 ×{s} (from the model card, official protocol): {card['psnr']:.2f} dB "
                  f"(bicubic {card['bicubic_psnr']:.2f} dB; the official RCAN reaches {paper['rcan'][str(s)]:.2f} "
                  "dB).", ""]
    return lines


def _self_check(sc: dict, s: int, links: dict) -> list[str]:
    h, w = sc["hr_height"], sc["hr_width"]
    lines = [f"**Self-check on your image.** We took {sc['region']} as the truth, shrank it ×{s} with the "
             f"MATLAB-exact bicubic ({_hw(h, w)} → {_hw(h // s, w // s)}), enlarged it back and compared with the "
             f"truth (PSNR on Y, {s}-pixel border shaved): **model {sc['model_psnr']:.2f} dB**, bicubic "
             f"{sc['bicubic_psnr']:.2f} dB — the model is {sc['model_psnr'] - sc['bicubic_psnr']:+.2f} dB closer "
             "to the truth than bicubic.", ""]
    if "best" in sc:
        b, t = sc["best"], sc["worst"]
        lines += [f"Where it gains most ({b['size']}×{b['size']} output pixels at y {b['y']}, x {b['x']}): "
                  f"{b['bicubic_psnr']:.2f} → {b['model_psnr']:.2f} dB ({b['gain']:+.2f} dB); where it gains "
                  f"least among the more detailed half of the windows (at y {t['y']}, x {t['x']}): "
                  f"{t['bicubic_psnr']:.2f} → {t['model_psnr']:.2f} dB ({t['gain']:+.2f} dB). Compare them in the "
                  "figure: edges and lines that the input pins down come back sharp; fine texture that the "
                  "shrunken input no longer determines stays soft.", ""]
        lines += _figure(links, "self_check")
    return lines


def _frequency(sp: dict, s: int, links: dict) -> list[str]:
    model_share, bic_share = 100 * sp["model_energy_share"], 100 * sp["bicubic_energy_share"]
    rho = sp["model_high_correlation"]
    return [f"**The frequency story, measured.** Above the input's Nyquist limit ({sp['nyquist']:.3f} cycles per "
            f"output pixel) the model restores **{model_share:.1f} %** of the truth's energy, bicubic "
            f"{bic_share:.1f} %. The model's high band correlates with the truth's at ρ = {rho:.2f} (bicubic "
            f"{sp['bicubic_high_correlation']:.2f}): {100 * max(rho, 0) ** 2:.0f} % of the model's energy above "
            "the limit is the truth's own detail, restored; the rest is not in the truth — detail guessed in "
            "the wrong place or with the wrong phase.", ""] + _figure(links, "spectrum")


def _scales(sc: dict, s: int, paper: dict) -> list[str]:
    rows = sc["bicubic_loss"]
    if not rows:
        return []
    lines = ["**×2 versus ×4 on your image.** Bicubic shrink-and-enlarge of the same truth at each scale, beside "
             "the paper's Set5 numbers:", "",
             "| scale | bicubic on your image | bicubic, Set5 (paper) | RCAN, Set5 (paper) |", "|---|---|---|---|"]
    for r in rows:
        k = str(r["scale"])
        mine = f" (this model: {sc['model_psnr']:.2f} dB)" if r["scale"] == s else ""
        lines.append(f"| ×{k} | {r['bicubic_psnr']:.2f} dB{mine} | {paper['bicubic'][k]:.2f} dB | "
                     f"{paper['rcan'][k]:.2f} dB |")
    if len(rows) == 2:
        lines += ["", f"Going from ×{rows[0]['scale']} to ×{rows[1]['scale']} costs bicubic "
                      f"{rows[0]['bicubic_psnr'] - rows[1]['bicubic_psnr']:.2f} dB on your image (Set5: "
                      f"{paper['bicubic']['2'] - paper['bicubic']['4']:.2f} dB): at ×4 each input pixel stands for "
                      "16 output pixels, and the band a network must fill is four times wider."]
    return lines + [""]


def _limits(sc: dict, w: dict) -> list[str]:
    rows = sc["degradations"]
    lines = ["**Limits, measured on your image.** The same self-check with inputs that are not the bicubic "
             "degradation the model learned:", "",
             "| input | bicubic | model | gain |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['input']} | {r['bicubic_psnr']:.2f} dB | {r['model_psnr']:.2f} dB | {r['gain']:+.2f} dB |")
    base = rows[0]["gain"]
    real = w.get("degradation") in CHAINS
    lines += ["", "The gain over bicubic goes from " + f"{base:+.2f} dB to "
              + " and ".join(f"{r['gain']:+.2f} dB ({r['input']})" for r in rows[1:])
              + (": these weights were fine-tuned on such inputs, at some cost on clean bicubic ones (for a "
                 "clean downscale, `--model deep` or `--strength 0`)." if real else
                 ": real photos with compression or camera blur are not the inputs the model was trained on "
                 "(`--model real` was; `--model auto` picks it for JPEGs)."),
              "", f"Training data of the weights that ran: {w.get('training_data', 'see their source')}. Trained "
              "with an L1 (pixel) loss to maximise PSNR: where many sharp textures fit the same small input, the "
              "loss is lowest for their average, which is smooth — so the model restores what the input "
              "determines and smooths what it does not, rather than inventing texture.", ""]
    return lines


def _section_workflow(record: dict, cfg: RCANConfig, links: dict) -> list[str]:
    """2. Input -> each stage (shapes, parameters, compute, time) -> output, and channel attention."""
    inp, out, tr = record.get("input"), record.get("output"), record.get("trace")
    hh, ww = (inp["height"], inp["width"]) if inp else (record["generic_size"], record["generic_size"])
    lines = ["## 2. The workflow: input → model → output", ""]
    rows = tr["stages"] if tr else record["stages"]
    if tr:
        where = (f"your whole input ({_hw(tr['height'], tr['width'])})" if tr["region"] == "the whole image"
                 else f"{tr['region']} of your input")
        lines.append(f"Each stage of the traced NumPy reference run on {where}: "
                     "its tensor shape (H×W×channels), parameters, share of the compute and the time it took:")
    else:
        lines.append(f"Each stage for a {_hw(hh, ww)} RGB input: its tensor shape (H×W×channels), parameters and "
                     "share of the compute:")
    lines += ["", "| stage | output shape | parameters | share of compute |" + (" time |" if tr else ""),
              "|---|---|---|---|" + ("---|" if tr else "")]
    for row, key in zip(rows, sources.TRACE_KEYS):
        t = (f" {tr['seconds'][key]:.3f} s |" if key in tr["seconds"] else " (in body) |") if tr else ""
        lines.append(f"| {row['stage']} | {_fmt_shape(row['shape'])} | {_num(row['params'])} | "
                     f"{100 * row['share']:.1f}% |{t}")
    total_p = sum(r["params"] for r in record["stages"])
    total_m = sum(r["macs"] for r in record["stages"])
    lines += ["", f"In all: {_num(total_p)} parameters, {total_m / 1e9:.2f} G multiply-adds for the whole "
                  f"{_hw(hh, ww)} input"
              + (f"; the accelerated (JAX) run took {record['seconds']:.2f} s" if record.get("seconds") else "")
              + (f" in tiles of {record['tile']}×{record['tile']}" if record.get("tile") else "") + ".", ""]
    lines += [
        "- **Mean shift** subtracts the training set's mean colour so the network works on zero-centred values.",
        f"- **Head**: one 3×3 conv lifts RGB to {cfg.n_feats} feature channels.",
        f"- **Residual in residual**: {cfg.n_resgroups} residual groups, each {cfg.n_resblocks} residual channel "
        "attention blocks (conv → ReLU → conv → channel attention, plus a skip) and a closing conv, with a short "
        "skip around each group and a long skip around the whole body. The skips carry the low frequencies "
        "straight through, so the blocks only learn the missing detail.",
        f"- **Channel attention** pools each channel over the image, squeezes {cfg.n_feats} → {cfg.squeeze} → "
        f"{cfg.n_feats} channels and gates each channel with a sigmoid: it reweights features by how useful they "
        "are for this image.",
        f"- **Upsampler** ({' then '.join(f'×{r}' for r in cfg.upsample_steps)}): a conv makes r² times the "
        "channels and pixel shuffle rearranges them into an r-times larger image (sub-pixel convolution); then "
        "the **tail** conv maps features back to RGB and the mean is added back."]
    if out:
        lines.append(f"- **Output**: {_hw(out['height'], out['width'])}, saved like the official code (clamped to "
                     "0..255, rounded half to even)" + (f", back to {inp['mode']}" if inp["mode"] != "RGB" else "")
                     + ".")
    att = record.get("attention_summary")
    if att:
        lines += ["", "What channel attention did on this image (gates in 0..1, mean over each group's RCABs):", "",
                  "| group | mean gate | range | most boosted channels | most damped channels |",
                  "|---|---|---|---|---|"]
        for a in att:
            boost = ", ".join(f"#{i} ({v:.2f})" for i, v in a["boosted"])
            damp = ", ".join(f"#{i} ({v:.2f})" for i, v in a["damped"])
            lines.append(f"| {a['group'] + 1} | {a['mean']:.3f} | {a['min']:.2f}–{a['max']:.2f} | {boost} | {damp} |")
        lines.append("")
        lines += _figure(links, "attention")
        maps = record.get("feature_maps") or []
        if maps:
            lines += ["The channels attention trusts most and least, as images (the output of their residual "
                      "group): " + "; ".join(f"{m['label']}, group {m['group'] + 1} channel #{m['channel']} "
                                             f"(mean gate {m['gate']:.2f})" for m in maps) + ".", ""]
            lines += _figure(links, "feature_maps")
    lines.append("")
    return lines


def _section_sources(record: dict, cfg: RCANConfig, links: dict) -> list[str]:
    """3. The papers and tools behind the run, from the sources catalogue."""
    inp, w = record.get("input"), record["weights"]
    lines = ["## 3. Papers and tools", ""]
    for src in sources.SOURCES["sources"]:
        refs = ", ".join(f"[{k}]({u})" for k, u in src["links"].items())
        lines.append(f"- **{src['title']}** — {refs}. {src['relation']}")
    lines.append("")
    if inp:
        lines.append("Tools that ran here (this project): `accel.upscale` (JAX + flax.nnx RCAN, the run), "
                     "`reference.rcan` (the NumPy reference, traced for the stage times and attention), "
                     "`reference.metrics` (MATLAB-exact bicubic and PSNR for the self-check), matplotlib (the "
                     "figures)" + (", `weights_convert` (the checkpoint, read without torch)" if w.get("converted")
                                  else "") + ".")
    else:
        lines.append("Tools in this project: `python -m accel.upscale IMAGE --explain` (runs RCAN and writes this "
                     "report for your image), `reference/rcan.py` (the NumPy reference, read it next to the paper), "
                     "`python -m accel.evaluate` (the paper's PSNR/SSIM protocol), `python -m weights_convert` "
                     "(official checkpoints without torch).")
    lines.append("")
    return lines


# --- figures ---------------------------------------------------------------------------------------

CAPTIONS = {
    "self_check": "Self-check crops at one zoom: input (nearest), bicubic, model, truth, and the error maps",
    "spectrum": "Radial power spectrum of truth, bicubic and model, with the input's Nyquist limit",
    "attention": "Channel attention gates: one row per RCAB, one column per channel",
    "feature_maps": "Feature maps of the most boosted and the most damped channel",
}


def make_figures(record: dict) -> dict:
    """The record's figures as matplotlib Figures, by name (the keys of CAPTIONS)."""
    from .explain import figures
    figs = {}
    sc = record.get("self_check")
    if sc:
        if "best" in sc:
            figs["self_check"] = figures.self_check(sc, record["scale"])
        figs["spectrum"] = figures.spectrum(sc["spectrum"], record["scale"])
    if record.get("attention") is not None:
        figs["attention"] = figures.attention(np.asarray(record["attention"]))
    if record.get("feature_maps"):
        figs["feature_maps"] = figures.feature_maps(record["feature_maps"])
    return figs


# --- HTML ------------------------------------------------------------------------------------------

def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)


FIGURE_LINE = re.compile(r"^!\[(.*)\]\((.+)\)$")


def markdown_to_html(md: str, images: dict[str, bytes]) -> list[str]:
    """The small Markdown subset the report uses: headings, paragraphs, bullet lists, tables, figures
    (a figure line's path is looked up in images and embedded)."""
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
        figure = FIGURE_LINE.match(line)
        if figure:
            data = base64.b64encode(images[figure[2]]).decode()
            out.append(f'<figure><img alt="{html.escape(figure[1])}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{html.escape(figure[1])}</figcaption></figure>")
        elif line.startswith("|"):
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


SLIDER_SCRIPT = """
document.querySelectorAll('.compare').forEach(function (box) {
  var top = box.querySelector('.after'), range = box.querySelector('input');
  function show() { top.style.clipPath = 'inset(0 0 0 ' + range.value + '%)'; }
  range.addEventListener('input', show);
  show();
});
"""


def _slider(images: dict) -> str:
    """Bicubic | model on the centre crop, one over the other; the range input moves the boundary."""
    b64 = lambda a: base64.b64encode(_png_array(a)).decode()
    h, w = images["model"].shape[:2]
    return ('<h3>Before | after on your image: bicubic | model (drag the slider)</h3>'
            f'<div class="compare" style="width:{2 * w}px;max-width:100%">'
            f'<img class="before" alt="bicubic" width="{2 * w}" src="data:image/png;base64,{b64(images["bicubic"])}">'
            f'<img class="after" alt="model" width="{2 * w}" src="data:image/png;base64,{b64(images["model"])}">'
            '<input type="range" min="0" max="100" value="50" aria-label="boundary between bicubic and model">'
            f"</div><p>A centre crop of {_hw(h // 2, w // 2)} input pixels, enlarged ×2 by each, shown at 2× zoom "
            "(left of the boundary: bicubic; right: the model).</p>")


def _png_array(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def render_html(md: str, images: dict[str, bytes], compare: dict | None = None) -> str:
    """One self-contained page: the Markdown's text and figures (embedded), and the before/after slider at
    the end of section 1 when the run's crops are given."""
    body = markdown_to_html(md, images)
    if compare:
        at = next((i for i, part in enumerate(body) if part.startswith("<h2>2.")), len(body))
        body.insert(at, _slider(compare))
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.45}"
             "table{border-collapse:collapse;display:block;overflow-x:auto}td,th{border:1px solid #ccc;"
             "padding:2px 6px}figure{margin:1em 0}figure img{max-width:100%;height:auto}"
             ".compare{position:relative;line-height:0}.compare img{display:block;image-rendering:pixelated;"
             "max-width:100%;height:auto}.compare .after{position:absolute;top:0;left:0}"
             ".compare input{position:absolute;bottom:4px;left:0;width:100%;margin:0}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>RCAN run explained</title><style>{style}</style></head><body>\n" + "\n".join(body)
            + f"\n<script>{SLIDER_SCRIPT}</script>\n</body></html>\n")


# --- the generic answer, without an image ----------------------------------------------------------

def generic_record(config: RCANConfig, size: int = 64, label: str = "") -> dict:
    return {"config": config, "scale": config.scale, "generic_size": size, "stages": stages(config, size, size),
            "weights": {"label": label or f"RCAN G{config.n_resgroups}R{config.n_resblocks}F{config.n_feats}",
                        "description": "architecture only (no image, no weights ran); "
                                       f"shapes for a {size}×{size} input."}}


def parser():
    ap = cli.parser("python -m accel.report", __doc__)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="deep", help="model size (default deep)")
    options.scale(ap, default=2)
    ap.add_argument("--size", type=int, default=64, help="input size for the shape table")
    return ap


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if not 8 <= args.size <= 65536:
        ap.error(f"--size must be from 8 to 65536 pixels, not {args.size}")
    print(render_markdown(generic_record(PRESETS[args.preset](args.scale), args.size, f"{args.preset} preset")))
    return 0


entry = cli.entry(main)   # the console script

if __name__ == "__main__":
    sys.exit(cli.run(main))
