"""Experiment for accel/PERFORMANCE.md (history: runs/PERFORMANCE_LOG.md): single images of new sizes, one `accel.upscale` process each (as people
run it), from an empty persistent cache: a first image, then three photos of new sizes, then the same three
again; and a 597×900 photo, then a 620×877 one, twice. Wall time of each process, and its first-run lines.

Run, from the checkout to measure (another checkout: REPO=path PYTHONPATH=path):
  python runs/experiments/new_sizes.py [deep|compact]
Crops of Set5's baby (the large ones from an enlargement of it): the content does not change the time.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

from PIL import Image

REPO = os.environ.get("REPO", os.getcwd())
SMALL = [(300, 300), (296, 312), (310, 290), (288, 305)]   # a first image, then three new sizes
LARGE = [(597, 900), (620, 877)]


def run(path: str, cache: str, model: str) -> str:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "accel.upscale", path, "--force", "--model", model], cwd=REPO,
                          env=dict(os.environ, RCAN_JAX_CACHE=cache), capture_output=True, text=True)
    lines = [line for line in done.stderr.splitlines() if "first run" in line]
    return f"{time.perf_counter() - t:6.2f} s  exit {done.returncode}  " + " | ".join(lines)


def main(model: str = "deep") -> None:
    work = tempfile.mkdtemp(prefix="new-sizes-")
    src = Image.open(os.path.join(REPO, "tests/data/Set5/HR_x2/baby_HR_x2.png"))
    for sizes, image, order in ((SMALL, src, SMALL + SMALL[1:]),
                                (LARGE, src.resize((1024, 1024), Image.BICUBIC), LARGE + LARGE[1:])):
        cache = os.path.join(work, "cache")
        shutil.rmtree(cache, ignore_errors=True)   # empty caches to start each series
        for w, h in order:
            path = os.path.join(work, f"{w}x{h}.png")
            image.crop((0, 0, w, h)).save(path)
            print(f"{w}×{h}: {run(path, cache, model)}", flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
