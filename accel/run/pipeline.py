"""upscale_image: one image (numpy array or PIL image) through RCAN, whole or in tiles within a memory
budget (the Plan chosen here, run by accel/run/runner.py), and back to the same kind. The CLI
(accel/upscale.py) is a thin layer over this."""
from __future__ import annotations

import os
import time

import jax
import numpy as np
from PIL import Image

from accel.api import first_run, load_model

from .images import ImageError, decode, decode_array, encode, encode_array
from .runner import super_resolve
from .tiles import OVERLAP, TILE_SIZES, Plan


def bytes_per_lr_pixel(config) -> float:
    """Peak working memory of one forward pass per LR pixel (float32), as measured.

    `python -m accel.bench --upscale WxH --upscale-args "--tile T"` at two tile sizes gives the slope
    (the rise of peak RSS per pixel of a batch of tiles): ≈ 6 feature maps of C channels
    per LR pixel in the body plus the upsampler's r²·C, for both the compact (C = 32) and the
    official model (C = 64) at ×2.
    """
    C, s = config.n_feats, config.scale
    return 4.0 * (6 * C + s * s * C + 6 * s * s)


def tile_batch() -> int:
    """Tiles per forward call: one per local device (forward splits the batch over them). One on a single
    device: a batch of several there only pads the last call (9 tiles in calls of 4 computed 12) and
    shrinks the tiles the memory budget allows (more tiles, more overlap)."""
    return jax.local_device_count()


def default_max_memory_gb() -> float:
    """A quarter of physical memory, at most 2 GB (the model, JAX and the output come on top)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8e9
    return min(2.0, total / 4 / 1e9)


def plan_tile(shape, config, max_memory_gb: float, batch: int | None = None) -> int | None:
    """None when the whole image fits the budget; else the largest tile size of TILE_SIZES that does, for
    calls of `batch` tiles (default tile_batch())."""
    batch = batch or tile_batch()
    per_px = bytes_per_lr_pixel(config)
    budget = max_memory_gb * 1e9
    H, W = shape[:2]
    if H * W * per_px <= budget:
        return None
    fitting = [t for t in TILE_SIZES if batch * t * t * per_px <= budget]
    return fitting[-1] if fitting else TILE_SIZES[0]


def plan_for(shape, config, tile="auto", overlap: int = OVERLAP, max_memory_gb: float | None = None) -> Plan:
    """One image's plan: whole (tile None), tiles of this size fitted to it, or (auto) whole if it fits the
    memory budget, else the largest tiles that do."""
    if tile == "auto":
        tile = plan_tile(shape, config, max_memory_gb or default_max_memory_gb())
    return Plan(tile, overlap, tile_batch()) if tile else Plan()


def upscale_image(image, model=None, *, tile="auto", overlap: int = OVERLAP, chop: bool = False,
                  ensemble: bool = False, max_memory_gb: float | None = None, progress=None, record=None,
                  notice=None):
    """Upscale a numpy array (HWC/HW uint8 or uint16, or float in 0..255) or a PIL image; returns the same kind.

    tile: "auto" (whole image if it fits max_memory_gb, else tiles), an int (tile size in LR pixels) or None.
    progress: a tqdm-like bar (reset to the number of tiles). notice(message): told once before a run
    that compiles a new shape. record: pass a dict to receive what happened (sizes, timings, tiling).
    """
    if not (tile in ("auto", None) or (isinstance(tile, int) and not isinstance(tile, bool) and tile >= 8)):
        raise ImageError(f"tile must be 'auto', None or a size of at least 8 LR pixels, not {tile!r}")
    if not (isinstance(overlap, int) and 0 <= overlap <= (tile if isinstance(tile, int) else TILE_SIZES[0]) // 2):
        raise ImageError(f"overlap must be an integer from 0 to half the tile, not {overlap!r}")
    model = model if model is not None else load_model()
    as_pil = isinstance(image, Image.Image)
    if as_pil:
        d = decode(image)
    else:
        d = decode_array(np.asarray(image))
    t0 = time.perf_counter()
    plan = plan_for(d.rgb.shape, model.config, tile, overlap, max_memory_gb)
    if progress is not None:
        progress.reset(total=1 if chop else len(plan.tiles(d.rgb.shape)) * (8 if ensemble else 1))
    shape, masked = plan.call_shape(d.rgb.shape)
    first = notice is not None and not chop and first_run(model, shape, masked)
    if first:
        what = f"{shape[0]} tiles of {shape[1]}×{shape[2]}" if plan.tile else f"{shape[1]}×{shape[2]}"
        notice(f"first run at {what} (H×W) here: timing the convolution paths and compiling, once for images "
               "of about this size")
    sr = super_resolve(model, d.rgb, plan, chop=chop, ensemble=ensemble, progress=progress)
    seconds = time.perf_counter() - t0
    if first:
        notice(f"first run done in {seconds:.1f} s, tuning and compiling included; later images of about this size "
               "reuse both")
    if record is not None:
        record.update(lr_shape=d.rgb.shape, sr_shape=sr.shape, tile=plan.tile, overlap=overlap, chop=chop, icc=d.icc,
                      ensemble=ensemble, seconds=seconds, mode=d.mode, bits=d.bits, sr_float=sr, lr_float=d.rgb)
    if as_pil:
        return encode(sr, d, model.config.scale)
    return encode_array(sr, np.asarray(image))
