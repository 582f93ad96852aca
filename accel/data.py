"""Training pairs: HR images, their MATLAB-bicubic LR, and random aligned patches prepared ahead.

Every batch is a pure function of (seed, step), so a resumed run sees exactly the batches an
uninterrupted run would have seen.
"""
from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from reference.metrics import imresize, modcrop

IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}


def list_images(folders, exclude=()) -> list[Path]:
    paths = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            paths.append(folder)
            continue
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such file or folder")
        paths += sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [p for p in paths if p.stem not in set(exclude) and p.name not in set(exclude)]


def read_rgb(path) -> np.ndarray:
    """uint8 [H, W, 3]; grayscale replicated to 3 channels as the official scripts do."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class PairSet:
    """HR images (mod-cropped) and their LR, made once with MATLAB's bicubic."""

    def __init__(self, paths, scale: int, min_lr: int):
        self.scale, self.hr, self.lr, self.names = scale, [], [], []
        for p in paths:
            hr = modcrop(read_rgb(p), scale)
            if min(hr.shape[:2]) // scale < min_lr:
                continue  # too small for one patch
            self.hr.append(hr)
            self.lr.append(imresize(hr, 1 / scale))
            self.names.append(Path(p).name)
        if not self.hr:
            raise ValueError(f"no training image is at least {min_lr * scale} px on each side")

    def batch(self, seed: int, step: int, batch_size: int, patch: int):
        """(lr [N, p, p, 3], hr [N, sp, sp, 3]) float32 in 0..255, random crops, flips and 90° turns."""
        rng = np.random.default_rng([seed, step])
        s = self.scale
        lr_out = np.empty((batch_size, patch, patch, 3), np.float32)
        hr_out = np.empty((batch_size, patch * s, patch * s, 3), np.float32)
        for n in range(batch_size):
            i = int(rng.integers(len(self.hr)))
            lr, hr = self.lr[i], self.hr[i]
            y = int(rng.integers(lr.shape[0] - patch + 1))
            x = int(rng.integers(lr.shape[1] - patch + 1))
            a = lr[y:y + patch, x:x + patch]
            b = hr[y * s:(y + patch) * s, x * s:(x + patch) * s]
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            a, b = np.rot90(a, k), np.rot90(b, k)
            if flip:
                a, b = a[:, ::-1], b[:, ::-1]
            lr_out[n], hr_out[n] = a, b
        return lr_out, hr_out


class Prefetcher:
    """Prepares batches of steps start, start+1, ... in a background thread, a few ahead."""

    def __init__(self, pairs: PairSet, seed, start, stop, batch_size, patch, depth=4):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        args = (pairs, seed, start, stop, batch_size, patch)
        self.thread = threading.Thread(target=self._fill, args=args, daemon=True)
        self.thread.start()

    def _fill(self, pairs, seed, start, stop, batch_size, patch):
        for step in range(start, stop):
            self.queue.put((step, pairs.batch(seed, step, batch_size, patch)))

    def __iter__(self):
        return self

    def __next__(self):
        return self.queue.get()

