"""Side-by-side crops of degraded held-out photos: bicubic | deep | real | truth (each enlarged ×2 by
nearest neighbour so that single pixels show), the degraded input made as `accel.evaluate --degrade` does.

    python runs/real/crops.py runs/real/heldout/butterfly_HR_x2.png runs/real/heldout/253036.png -o runs/real/crops
"""
import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import accel
from accel.data import read_rgb
from accel.degrade import testset
from accel.evaluate import image_key
from accel.explain.evidence import enlarge
from reference.metrics import imresize, modcrop, psnr

SIDE = 128   # crop side in HR pixels


def busiest(truth: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left of the side×side window with the most gradient energy (where detail is to restore)."""
    g = np.abs(np.diff(truth.mean(axis=2), axis=0))[:, :-1] + np.abs(np.diff(truth.mean(axis=2), axis=1))[:-1]
    best, where = -1.0, (0, 0)
    for y in range(0, g.shape[0] - side, side // 4):
        for x in range(0, g.shape[1] - side, side // 4):
            e = g[y:y + side, x:x + side].sum()
            if e > best:
                best, where = e, (y, x)
    return where


def panel(path: Path, models: dict, out: Path) -> str:
    truth = modcrop(read_rgb(path), 2)
    name = image_key(path)
    data, draws = testset.degrade_photo(truth, 2, testset.rng_for(0, name))
    lr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    outs = {"bicubic": imresize(lr, 2), **{k: enlarge(m, lr) for k, m in models.items()}, "truth": truth}
    y, x = busiest(truth, SIDE)
    tiles, labels = [], []
    for label, img in outs.items():
        crop = img[y:y + SIDE, x:x + SIDE]
        tiles.append(np.repeat(np.repeat(crop, 2, 0), 2, 1))
        labels.append(label if label == "truth" else f"{label} {psnr(truth, img, 2):.2f} dB")
    gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    row = np.concatenate([t for pair in zip(tiles, [gap] * len(tiles)) for t in pair][:-1], axis=1)
    canvas = Image.new("RGB", (row.shape[1], row.shape[0] + 22), "white")
    canvas.paste(Image.fromarray(row), (0, 22))
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(labels):
        draw.text((i * (tiles[0].shape[1] + 6) + 4, 4), text, fill="black")
    target = out / f"{name}_q{draws['quality']}.png"
    canvas.save(target)
    return f"{target}: {', '.join(labels)}; input {draws}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="+")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = {name: accel.load_model(model=name) for name in ("deep", "real")}
    for p in args.photos:
        print(panel(Path(p), models, out))


if __name__ == "__main__":
    main()
