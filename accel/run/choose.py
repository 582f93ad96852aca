"""Which shipped model suits an input file (`--model auto`): read from the file, never from its name.

A JPEG's quality is estimated from its quantization tables (the IJG tables libjpeg, Pillow, most
editors and many cameras scale by quality: the quality whose tables are nearest); a WebP is lossy when its
image chunk is VP8 and lossless when it is VP8L. Below QUALITY_THRESHOLD, and for any lossy WebP or
JPEG-compressed TIFF, the real-photo model runs; a lossless file (PNG, BMP, lossless WebP, TIFF, …) gets
the bicubic-trained deep model, which is what clean downscales are.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from accel.degrade.chain import CHROMINANCE, LUMINANCE, scaled_table

# JPEGs of lower quality get the real-photo model. Measured on clean downscales saved as JPEG, the hardest case
# for it (no blur, no noise; `python runs/real/threshold.py runs/real/heldout 80 85 88 90 93 96` on the 25
# held-out photos, runs/measurements/real/threshold.jsonl): real − deep = +0.48 dB at quality 80, +0.14 at 88,
# +0.02 at 90, −0.20 at 93, −0.46 at 96, crossing zero just above 90; so from 91 on, deep. (On blurred, noisy
# JPEGs real gains more at every quality: where in doubt, a JPEG keeps its detail.)
QUALITY_THRESHOLD = 91
REAL, BICUBIC = "real", "deep"


@dataclasses.dataclass(frozen=True)
class Choice:
    model: str                    # a shipped model's name
    reason: str                   # one line, for the first line of output, --json and the report
    quality: int | None = None    # the JPEG quality estimated, when there is one


def jpeg_quality(im: Image.Image) -> tuple[int, bool] | None:
    """(quality 1..100, exact) of a JPEG from its quantization tables; exact when they are the IJG tables
    scaled to that quality. None for an image without tables."""
    tables = getattr(im, "quantization", None)
    if not tables:
        return None
    q = np.arange(1, 101, dtype=np.float32)[:, None, None]
    candidates = [np.asarray(scaled_table(base, q)).reshape(100, 64) for base in (LUMINANCE, CHROMINANCE)]
    error = np.zeros(100)
    for index, table in sorted(tables.items())[:2]:
        values = np.asarray(list(table), np.float64)
        if values.size != 64:
            return None
        error += np.abs(candidates[min(index, 1)] - values).sum(axis=1)
    best = int(np.argmin(error))
    return best + 1, bool(error[best] == 0)


def webp_is_lossy(path) -> bool | None:
    """True for a WebP whose image is VP8 (lossy), False for VP8L (lossless), None if neither is found."""
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
            return None
        while True:   # the chunks: VP8X (extended) and metadata may come first
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            kind, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if kind in (b"VP8 ", b"VP8L"):
                return kind == b"VP8 "
            if kind == b"ANMF":   # an animation frame holds its image chunks after a 16-byte header
                f.seek(16, 1)
                continue
            f.seek(size + (size & 1), 1)


def choose(path, im: Image.Image | None = None) -> Choice:
    """The model for one input file (im: the file already opened, to save reading it again)."""
    own = im is None
    im = Image.open(path) if own else im
    try:
        fmt = (im.format or "").upper()
        if fmt in ("JPEG", "MPO"):
            found = jpeg_quality(im)
            if found is None:
                return Choice(REAL, "a JPEG without readable quantization tables: the real-photo model")
            q, exact = found
            est = f"quality {q}" if exact else f"quality ≈{q} (nearest IJG tables)"
            if q < QUALITY_THRESHOLD:
                return Choice(REAL, f"a JPEG of {est}, below {QUALITY_THRESHOLD}: the real-photo model", q)
            return Choice(BICUBIC, f"a JPEG of {est}, {QUALITY_THRESHOLD} or above: little to clean, where "
                                   "the bicubic-trained model keeps more detail", q)
        if fmt == "WEBP":
            lossy = webp_is_lossy(path)
            if lossy:
                return Choice(REAL, "a lossy WebP: the real-photo model")
            return Choice(BICUBIC, "a lossless WebP: the bicubic-trained model")
        if fmt == "TIFF" and "jpeg" in str(im.info.get("compression", "")):
            return Choice(REAL, "a JPEG-compressed TIFF: the real-photo model")
        return Choice(BICUBIC, f"a lossless {fmt or 'image'}: the bicubic-trained model")
    finally:
        if own:
            im.close()
