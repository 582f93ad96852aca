"""Whole images through the model: shape buckets, tiles with seamless blending, the official
forward_chop, and the ×8 self-ensemble (RCAN+). Images here are float32 HWC in [0, rgb_range].

Channel attention pools over whatever the network sees. A tile (or a chop quadrant) therefore
sees slightly different channel statistics than the whole image, and its output differs slightly;
tests/test_upscale.py measures how much (PSNR between tiled and whole-image output >= 50 dB).
Padding, by contrast, is exact: padded pixels are masked out of every conv and every pooling.
"""
from __future__ import annotations

import numpy as np

from accel.api import forward

BUCKET = 16        # the finest step of the shape ladder (bucket)
OVERLAP = 16       # LR pixels two neighbouring tiles share by default (blended with linear ramps)
BATCH = 4          # tiles per call where the caller does not choose (the folder runner's fixed calls)
TILE_SIZES = (64, 96, 128, 192, 256, 384, 512, 768)   # the sides a single image's tile plan picks from
FOLDER_TILE = 128  # a folder's one tile side: the fastest of 128/192/256 (`python -m accel.bench --folder DIR`)
STEPS_PER_OCTAVE = 8


def bucket(n: int, multiple: int = BUCKET) -> int:
    """The length a side of n pixels is zero-padded to (masked, so exactly): the next step of a ladder of
    STEPS_PER_OCTAVE steps per doubling, multiples of `multiple` (…, 240, 256, 288, 320, …, 512, 576, …).
    Images of nearby sizes share one compiled shape: each new size compiled again (and timed the paths
    again), a few seconds for every image of a size not seen before; a step adds at most 1/8 of a side in
    padding (≈ 6 % on average at 300 pixels)."""
    step = max(multiple, 2 ** (max(n - 1, 1).bit_length() - 1) // STEPS_PER_OCTAVE)
    return round_up(n, step)


def round_up(n: int, multiple: int) -> int:
    """n up to a multiple (at least one multiple). Tiles of a large image are sized to it this finely:
    there the work of the padding would cost more than the compile it saves."""
    return max(multiple, -(-n // multiple) * multiple)


def run_batch(model, images: list[np.ndarray], shape=None, batch: int | None = None,
              forward=forward, always_mask: bool = False) -> list[np.ndarray]:
    """Images of any sizes -> their outputs; zero-padded (with a mask) to one shape, so one compile.
    forward(model, x, mask) runs the network (accel.forward; the benchmark passes torch's).
    always_mask: pass the mask even when every image fills the shape (one compiled program, not two)."""
    s = model.config.scale
    H = max(im.shape[0] for im in images) if shape is None else shape[0]
    W = max(im.shape[1] for im in images) if shape is None else shape[1]
    if shape is None:
        H, W = bucket(H), bucket(W)
    n = batch or len(images)
    out = []
    for i in range(0, len(images), n):
        group = images[i:i + n]
        x = np.zeros((n, H, W, 3), np.float32)
        mask = np.zeros((n, H, W, 1), np.float32)
        for j, im in enumerate(group):
            x[j, :im.shape[0], :im.shape[1]] = im
            mask[j, :im.shape[0], :im.shape[1]] = 1
        needs_mask = always_mask or any(im.shape[:2] != (H, W) for im in group) or len(group) < n
        y = np.asarray(forward(model, x, mask if needs_mask else None))
        out += [y[j, :s * im.shape[0], :s * im.shape[1]] for j, im in enumerate(group)]
    return out


def whole(model, img: np.ndarray) -> np.ndarray:
    return run_batch(model, [img])[0]


def fit_tile(length: int, tile: int, overlap: int) -> int:
    """The tile length (at most `tile`, a multiple of 8) that covers `length` with as few tiles as `tile`
    needs, spread evenly. Without it a length just over a multiple of the tile needs one more tile that
    mostly repeats its neighbour: 1024 pixels in tiles of 512 overlapping by 16 took three tiles of 512
    (1.5× the work on each axis, 2.25× on an image); fitted, three tiles of 352 (1.03×)."""
    if length <= tile:
        return length
    n = -(-(length - overlap) // (tile - overlap))
    return min(tile, round_up(-(-(length + (n - 1) * overlap) // n), 8))


def tile_shape(shape, tile: int, overlap: int, fit: bool = True) -> tuple[int, int]:
    """The (height, width) of the tiles that cover an image of this shape: fit_tile on each axis, or
    (fit=False) tile×tile, cut to the image."""
    if not fit:
        return min(tile, shape[0]), min(tile, shape[1])
    return fit_tile(shape[0], tile, overlap), fit_tile(shape[1], tile, overlap)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def _ramp(n: int, lead: int, trail: int) -> np.ndarray:
    """1 inside, rising over `lead` samples at the start and falling over `trail` at the end."""
    w = np.ones(n, np.float32)
    if lead:
        w[:lead] = (np.arange(lead) + 0.5) / lead
    if trail:
        w[n - trail:] = np.minimum(w[n - trail:], ((np.arange(trail) + 0.5) / trail)[::-1])
    return w


def tiles_for(shape, tile: int, overlap: int, fit: bool = True):
    th, tw = tile_shape(shape, tile, overlap, fit)
    return [(y, x) for y in _starts(shape[0], th, overlap) for x in _starts(shape[1], tw, overlap)]


class Canvas:
    """One image's grid of tiles overlapping by `overlap` (the last row and column flush with the edge),
    and its output being blended from the tiles' outputs with linear ramps (no seams). fit: tiles sized
    to the image (tile_shape); else tile×tile, the one shape that tiles of many images share (folders)."""

    def __init__(self, img: np.ndarray, tile: int, overlap: int, scale: int, fit: bool = True):
        self.img, self.s = img, scale
        H, W = img.shape[:2]
        self.th, self.tw = tile_shape(img.shape, tile, overlap, fit)
        self.ys, self.xs = _starts(H, self.th, overlap), _starts(W, self.tw, overlap)
        self.coords = [(y, x) for y in self.ys for x in self.xs]
        self.acc = np.zeros((scale * H, scale * W, 3), np.float32)
        self.wsum = np.zeros((scale * H, scale * W, 1), np.float32)
        self.left = len(self.coords)

    def crop(self, y: int, x: int) -> np.ndarray:
        return self.img[y:y + self.th, x:x + self.tw]

    def add(self, y: int, x: int, sr: np.ndarray) -> None:
        s, th, tw, ys, xs = self.s, self.th, self.tw, self.ys, self.xs
        # Ramp only where a neighbour tile overlaps; the overlap may be larger for the last tile.
        lead_y = s * (ys[ys.index(y) - 1] + th - y) if y > 0 else 0
        lead_x = s * (xs[xs.index(x) - 1] + tw - x) if x > 0 else 0
        trail_y = s * (y + th - ys[ys.index(y) + 1]) if y != ys[-1] else 0
        trail_x = s * (x + tw - xs[xs.index(x) + 1]) if x != xs[-1] else 0
        w = _ramp(s * th, lead_y, trail_y)[:, None, None] * _ramp(s * tw, lead_x, trail_x)[None, :, None]
        self.acc[s * y:s * (y + th), s * x:s * (x + tw)] += sr[:s * th, :s * tw] * w
        self.wsum[s * y:s * (y + th), s * x:s * (x + tw)] += w
        self.left -= 1

    def result(self) -> np.ndarray:
        return self.acc / self.wsum


def tiled(model, img: np.ndarray, tile: int, overlap: int = OVERLAP, batch: int = BATCH, progress=None,
          forward=forward) -> np.ndarray:
    """Tiles of tile×tile LR pixels overlapping by `overlap`, blended with linear ramps (no seams)."""
    canvas = Canvas(img, tile, overlap, model.config.scale)
    shape = (round_up(canvas.th, 8), round_up(canvas.tw, 8))
    for i in range(0, len(canvas.coords), batch):
        group = canvas.coords[i:i + batch]
        outs = run_batch(model, [canvas.crop(y, x) for y, x in group], shape=shape, batch=batch, forward=forward)
        for (y, x), sr in zip(group, outs):
            canvas.add(y, x, sr)
        if progress is not None:
            progress.update(len(group))
    return canvas.result()


def forward_chop(model, img: np.ndarray, shave: int = 10, min_size: int = 160000) -> np.ndarray:
    """The official test code's forward_chop: 4 overlapping quadrants of (h//2 + shave) × (w//2 + shave),
    recursing while a quadrant has >= min_size pixels; each quadrant runs alone; centres are pasted."""
    s = model.config.scale
    h, w = img.shape[:2]
    h_half, w_half = h // 2, w // 2
    h_size, w_size = h_half + shave, w_half + shave
    quads = [img[0:h_size, 0:w_size], img[0:h_size, w - w_size:w],
             img[h - h_size:h, 0:w_size], img[h - h_size:h, w - w_size:w]]
    if w_size * h_size < min_size:
        # One sample each, batched: channel attention pools per sample, so this equals 4 runs.
        srs = run_batch(model, quads, shape=quads[0].shape[:2])
    else:
        srs = [forward_chop(model, q, shave, min_size) for q in quads]
    H, W = s * h, s * w
    hh, wh, hs, ws = s * h_half, s * w_half, s * h_size, s * w_size
    out = np.empty((H, W, 3), np.float32)
    out[0:hh, 0:wh] = srs[0][0:hh, 0:wh]
    out[0:hh, wh:W] = srs[1][0:hh, ws - W + wh:ws]
    out[hh:H, 0:wh] = srs[2][hs - H + hh:hs, 0:wh]
    out[hh:H, wh:W] = srs[3][hs - H + hh:hs, ws - W + wh:ws]
    return out


# The 8 flips/transposes of RCAN+ (official forward_x8): (vertical flip, horizontal flip, transpose).
TRANSFORMS = [(v, h, t) for t in (False, True) for v in (False, True) for h in (False, True)]


def _flip(img, v, h, t):
    if v:
        img = img[::-1]
    if h:
        img = img[:, ::-1]
    if t:
        img = img.transpose(1, 0, 2)
    return np.ascontiguousarray(img)


def _undo(img, v, h, t):
    if t:
        img = img.transpose(1, 0, 2)
    if h:
        img = img[:, ::-1]
    if v:
        img = img[::-1]
    return img


def self_ensemble(run, img: np.ndarray) -> np.ndarray:
    """RCAN+: the mean of run() over the 8 dihedral transforms of the input, each transformed back."""
    total = None
    for v, h, t in TRANSFORMS:
        sr = _undo(run(_flip(img, v, h, t)), v, h, t)
        total = sr.astype(np.float64) if total is None else total + sr
    return (total / len(TRANSFORMS)).astype(np.float32)


def super_resolve(model, img: np.ndarray, tile: int | None = None, overlap: int = OVERLAP, chop: bool = False,
                  ensemble: bool = False, progress=None, batch: int = BATCH) -> np.ndarray:
    """One float32 HWC image in [0, rgb_range] -> the model's output, float32, unclamped."""
    if chop:
        run = lambda im: forward_chop(model, im)
    elif tile:
        run = lambda im: tiled(model, im, tile, overlap, batch=batch, progress=progress)
    else:
        run = lambda im: whole(model, im)
    return self_ensemble(run, img) if ensemble else run(img)
