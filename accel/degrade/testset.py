"""The degraded test set: clean HR photos made into the small, soft, noisy JPEGs people have.

Written with other tools than the training chain (accel/degrade/chain.py), so that a model is not scored on
its own implementation's quirks: Pillow's Gaussian blur on the HR, MATLAB's bicubic ×1/s, NumPy's
Gaussian noise, Pillow's JPEG (libjpeg, 4:2:0). Each image's draws come from (seed, its name) alone, so
an image is degraded the same way whatever else is in the folder.
"""
from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image, ImageFilter

from reference.metrics import imresize

BLUR = (0.2, 1.2)      # Gaussian σ on the HR, in HR pixels: a slightly soft lens or a phone's processing
NOISE = (0.0, 4.0)     # Gaussian σ on the LR, in grey levels: sensor noise after the phone's denoising
QUALITY = (60, 90)     # JPEG quality, inclusive: what phones, messengers and the web save


def rng_for(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def degrade_photo(hr: np.ndarray, scale: int, rng: np.random.Generator) -> tuple[bytes, dict]:
    """uint8 HR [sH, sW, 3] -> (the JPEG file's bytes of the degraded [H, W] LR, the draws)."""
    sigma, noise = rng.uniform(*BLUR), rng.uniform(*NOISE)
    quality = int(rng.integers(QUALITY[0], QUALITY[1] + 1))
    blurred = np.asarray(Image.fromarray(hr).filter(ImageFilter.GaussianBlur(sigma)))
    lr = imresize(blurred, 1 / scale).astype(np.float64)
    lr = np.clip(np.round(lr + rng.normal(0, noise, lr.shape)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(lr).save(buf, "JPEG", quality=quality)
    return buf.getvalue(), {"blur_sigma": round(sigma, 3), "noise_sigma": round(noise, 3), "quality": quality}


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))
