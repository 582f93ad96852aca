"""The one loop every image goes through on its way to the model: tiles of canvases (accel/run/tiles.py),
gathered into calls of one shape and blended back. One photo (whole or in tiles), its 8 transforms for the
self-ensemble and a folder's tiles of many photos (accel/run/folder.py adds the threads) all run through
Runner; the official forward_chop is kept beside it to reproduce the paper's test code. Images here are
float32 HWC in [0, rgb_range].
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np

from accel.api import forward

from .tiles import Canvas, Plan


def run_batch(model, images: list[np.ndarray], shape, batch: int | None = None,
              forward=forward, always_mask: bool = False) -> list[np.ndarray]:
    """Images of any sizes up to shape -> their outputs; zero-padded (with a mask) to that shape, so one
    compile. forward(model, x, mask) runs the network (accel.forward; the benchmark passes torch's).
    always_mask: pass the mask even when every image fills the shape (one compiled program, not two)."""
    s = model.config.scale
    H, W = shape
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


class Runner:
    """Tiles of any number of canvases waiting for the model, run in calls of plan.batch tiles of one shape
    (tiles of several images share a call when their plan pads them alike, as a fixed plan does)."""

    def __init__(self, model, plan: Plan, forward=forward):
        self.model, self.plan, self.forward = model, plan, forward
        self.waiting: deque[tuple[Canvas, int, int]] = deque()

    def add(self, img: np.ndarray) -> Canvas:
        canvas = Canvas(img, self.plan, self.model.config.scale)
        self.waiting.extend((canvas, y, x) for y, x in canvas.coords)
        return canvas

    def step(self) -> list[Canvas]:
        """One call: the first waiting tiles of the first one's shape. Returns the canvases it completed."""
        shape = self.waiting[0][0].shape
        group = []
        while self.waiting and len(group) < self.plan.batch and self.waiting[0][0].shape == shape:
            group.append(self.waiting.popleft())
        t0 = time.perf_counter()
        outs = run_batch(self.model, [c.crop(y, x) for c, y, x in group], shape, self.plan.batch, self.forward,
                         always_mask=self.plan.fixed)
        took = (time.perf_counter() - t0) / len(group)
        for (canvas, y, x), sr in zip(group, outs):
            canvas.seconds += took
            canvas.add(y, x, sr)
        return [c for c in dict.fromkeys(c for c, _, _ in group) if c.left == 0]

    def upscale(self, img: np.ndarray, progress=None) -> np.ndarray:
        """One image through the model alone (nothing else waiting)."""
        canvas = self.add(img)
        while self.waiting:
            before = canvas.left
            self.step()
            if progress is not None:
                progress.update(before - canvas.left)
        return canvas.result()


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


def super_resolve(model, img: np.ndarray, plan: Plan = Plan(), chop: bool = False, ensemble: bool = False,
                  progress=None, forward=forward) -> np.ndarray:
    """One float32 HWC image in [0, rgb_range] -> the model's output, float32, unclamped: whole by default,
    else as the plan cuts it; chop: the official forward_chop instead; ensemble: RCAN+ over either."""
    if chop:
        run = lambda im: forward_chop(model, im)   # noqa: E731
    else:
        runner = Runner(model, plan, forward)
        run = lambda im: runner.upscale(im, progress)   # noqa: E731
    return self_ensemble(run, img) if ensemble else run(img)
