"""A folder of N photos of different sizes for `python -m accel.bench --folder` (crops of the Set5
images in tests/data, so it works on any machine with the repository):

    python runs/make_folder.py /tmp/folder50 --count 50
"""
import argparse
import random
from pathlib import Path

from PIL import Image

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("out", help="folder to create")
ap.add_argument("--count", type=int, default=50)
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()
rng = random.Random(args.seed)
sources = [Image.open(p).convert("RGB") for p in sorted(Path(__file__).parents[1].glob("tests/data/Set5/HR_x2/*.png"))]
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
for i in range(args.count):
    im = sources[i % len(sources)]
    w, h = rng.randint(min(160, im.width), im.width), rng.randint(min(120, im.height), im.height)
    x, y = rng.randint(0, im.width - w), rng.randint(0, im.height - h)
    im.crop((x, y, x + w, y + h)).save(out / f"photo{i:03}.png")
