"""Build the explanation's run record from a real upscale, and write <output stem>.md / .html.

Heavy parts are bounded so that --explain stays cheap on big photos: the traced NumPy run (stage
times, channel attention) and the self-check use a centre crop, and the report says so.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

import reference
from reference import explain
from reference.files import atomic_write
from reference.metrics import imresize, modcrop, psnr, quantize
from reference.weights import read_metadata, stages

from . import inference
from .api import DEFAULT_WEIGHTS, model_weights

CARD = Path(__file__).parent / "weights" / "model_card.json"


def _centre(a: np.ndarray, size: int) -> tuple[np.ndarray, str]:
    h, w = a.shape[:2]
    if h <= size and w <= size:
        return a, "the whole image"
    ch, cw = min(h, size), min(w, size)
    y, x = (h - ch) // 2, (w - cw) // 2
    return a[y:y + ch, x:x + cw], f"a centre crop of {cw}×{ch} pixels"


def weights_info(weights_path) -> dict:
    if weights_path is None:
        card = json.loads(CARD.read_text()) if CARD.is_file() else None
        meta = read_metadata(DEFAULT_WEIGHTS)
        info = {"label": "the shipped compact RCAN ×2 (trained by this project)",
                "description": f"accel/weights/{DEFAULT_WEIGHTS.name}, {meta.get('steps', '?')} training steps on "
                               "T91 + BSD200; see accel/weights/MODEL_CARD.md.", "converted": False}
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


def build_record(src, dst, model, weights_path, run: dict, out_size) -> dict:
    config = model.config
    s = config.scale
    lr = run["lr_float"]
    h, w = lr.shape[:2]
    record = {"config": config, "scale": s, "weights": weights_info(weights_path),
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


def write_reports(src, dst, model, weights_path, run: dict) -> tuple[Path, Path]:
    with Image.open(dst) as im:
        size = im.size
    record = build_record(src, dst, model, weights_path, run, size)
    md = explain.render_markdown(record)
    page = explain.render_html(md, explain.figures(record))
    dst = Path(dst)
    md_path, html_path = dst.with_suffix(".md"), dst.with_suffix(".html")
    atomic_write(md_path, lambda tmp: Path(tmp).write_text(md, encoding="utf-8"))
    atomic_write(html_path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return md_path, html_path
