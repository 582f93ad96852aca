"""Training data on the device: HR images and their MATLAB-bicubic LR, cropped by a jitted gather.

Each HR image is mod-cropped, turned to landscape and downscaled once with MATLAB's bicubic
(reference.metrics.imresize), then all of them are packed into two zero-padded uint8 arrays that stay
in device memory (~170 MB for T91 + BSD200 at ×2). A batch is then a pure function of a PRNG key:
random image, random aligned position, one of the 8 flips/turns — a gather inside the training step,
so a step never waits for the host, and a resumed run sees exactly the batches of an unbroken one.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from reference.metrics import imresize, modcrop

from .run.images import IMAGE_SUFFIXES


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


def _pair(path, scale: int):
    hr = modcrop(read_rgb(path), scale)
    if hr.shape[0] > hr.shape[1]:
        # Landscape for tighter packing. Harmless: every crop gets one of the 8 flips/turns drawn
        # uniformly, so the distribution of patches is the same for an image and its turned copy.
        hr = np.ascontiguousarray(np.rot90(hr))
    return hr, imresize(hr, 1 / scale)


class TrainingImages:
    """HR images (mod-cropped, landscape) and their LR, packed and zero-padded: uint8 arrays
    hr [N, sHmax, sWmax, 3] and lr [N, Hmax, Wmax, 3], with each LR image's size in lr_size [N, 2]."""

    def __init__(self, paths, scale: int, patch: int, workers: int = 4):
        self.scale, self.patch = scale, patch
        with ThreadPoolExecutor(workers) as pool:     # imresize is NumPy: it releases the GIL in its dots
            pairs = list(pool.map(lambda p: _pair(p, scale), paths))
        keep = [(Path(p).name, hr, lr) for p, (hr, lr) in zip(paths, pairs) if min(lr.shape[:2]) >= patch]
        if not keep:
            raise ValueError(f"no training image is at least {patch * scale} px on each side")
        self.names = [k[0] for k in keep]
        height = max(lr.shape[0] for _, _, lr in keep)
        width = max(lr.shape[1] for _, _, lr in keep)
        self.lr = np.zeros((len(keep), height, width, 3), np.uint8)
        self.hr = np.zeros((len(keep), height * scale, width * scale, 3), np.uint8)
        self.lr_size = np.zeros((len(keep), 2), np.int32)
        for i, (_, hr, lr) in enumerate(keep):
            self.lr[i, :lr.shape[0], :lr.shape[1]] = lr
            self.hr[i, :hr.shape[0], :hr.shape[1]] = hr
            self.lr_size[i] = lr.shape[:2]

    def __len__(self):
        return len(self.names)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"lr": self.lr, "hr": self.hr, "lr_size": self.lr_size}


def dihedral_coords(size: int, t):
    """Source (row, col) [size, size] of each output pixel of a patch turned/flipped by t in 0..7:
    bit 0 transposes, bit 1 flips rows, bit 2 flips columns (the 8 elements of the square's group)."""
    u, v = jnp.meshgrid(jnp.arange(size), jnp.arange(size), indexing="ij")
    a, b = jnp.where(t & 1, v, u), jnp.where(t & 1, u, v)
    a = jnp.where(t & 2, size - 1 - a, a)
    b = jnp.where(t & 4, size - 1 - b, b)
    return a, b


def _gather(images, index, y, x, size: int, t):
    """images[index, y + rows, x + cols] for each sample, with its flip/turn: [N, size, size, 3] uint8."""
    a, b = jax.vmap(lambda t: dihedral_coords(size, t))(t)              # [N, size, size] each
    return images[index[:, None, None], y[:, None, None] + a, x[:, None, None] + b]


def draw_crops(key, lr_size, batch: int, patch: int):
    """Which image, where (LR pixels) and which flip/turn, for each of a batch of patches."""
    k_index, k_y, k_x, k_t = jax.random.split(key, 4)
    index = jax.random.randint(k_index, (batch,), 0, lr_size.shape[0])
    size = lr_size[index]
    y = jax.random.randint(k_y, (batch,), 0, size[:, 0] - patch + 1)
    x = jax.random.randint(k_x, (batch,), 0, size[:, 1] - patch + 1)
    t = jax.random.randint(k_t, (batch,), 0, 8)
    return index, y, x, t


def random_crops(data: dict, key, batch: int, patch: int, scale: int):
    """(lr [N, p, p, 3], hr [N, sp, sp, 3]) float32 in 0..255: aligned crops of the packed images
    (TrainingImages.arrays() on the device), each with the same random flip/turn. Jit-friendly."""
    index, y, x, t = draw_crops(key, data["lr_size"], batch, patch)
    lr = _gather(data["lr"], index, y, x, patch, t)
    hr = _gather(data["hr"], index, y * scale, x * scale, patch * scale, t)
    return lr.astype(jnp.float32), hr.astype(jnp.float32)
