"""Where --model auto switches: the deep and the real model on clean downscales saved as JPEG at rising
qualities (no blur, no noise: the hardest case for the real model). Prints one row per quality.

    python runs/real/threshold.py runs/real/heldout 80 90 95 97 99
"""
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import accel
from accel.data import read_rgb
from accel.explain.evidence import enlarge
from reference.metrics import imresize, modcrop, psnr

folder, qualities = Path(sys.argv[1]), [int(q) for q in sys.argv[2:]]
photos = sorted(p for p in folder.iterdir() if p.suffix == ".png")
models = {name: accel.load_model(model=name) for name in ("deep", "real")}
rows = []
for q in qualities:
    scores = {name: [] for name in models}
    for path in photos:
        hr = modcrop(read_rgb(path), 2)
        buf = io.BytesIO()
        Image.fromarray(imresize(hr, 0.5)).save(buf, "JPEG", quality=q)
        lr = np.asarray(Image.open(buf).convert("RGB"))
        for name, model in models.items():
            scores[name].append(psnr(hr, enlarge(model, lr), 2))
    row = {"quality": q, **{name: float(np.mean(v)) for name, v in scores.items()}, "images": len(photos)}
    rows.append(row)
    print(json.dumps(row), flush=True)
