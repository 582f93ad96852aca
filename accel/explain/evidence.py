"""What the explanation report measures on the user's own image, so that each claim has this run's numbers.

The self-check treats (a centre region of) the input as the truth: shrink it ×s with MATLAB's bicubic,
enlarge it back with bicubic and with the model, and compare all three with the truth. From that:

- the crops where the model gains most and least over bicubic (PSNR per window);
- the frequency story: radial power spectra of truth, bicubic and model, with the input's Nyquist limit
  (0.5/s cycles per output pixel): how much of the truth's energy above the limit each restores, and how
  well the model's high band correlates with the truth's (restored, rather than invented);
- the limits: the same check with a JPEG-compressed, a slightly blurred and a degraded-photo input
  (accel/degrade/testset.py);
- ×2 versus ×4: what bicubic loses at each scale on this image.

Arrays are H×W×3 (uint8 for images, float for maps); every number is a plain float for the run record.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageFilter

from accel.degrade import testset
from accel.run.runner import super_resolve
from reference.metrics import imresize, psnr, quantize, rgb_to_y

SELF_CHECK = 256   # side of the centre region the self-check uses, in input pixels (bounded for big photos)
WINDOW = 48        # side of the windows searched for the best and worst crop, in output pixels
JPEG_QUALITY = 75
BLUR_SIGMA = 0.8   # Gaussian blur of the input, in input pixels: a slightly soft camera


def enlarge(model, small: np.ndarray) -> np.ndarray:
    """The model's output for a uint8 image, quantized like the official code."""
    return quantize(super_resolve(model, small.astype(np.float32)))


def nearest(small: np.ndarray, scale: int) -> np.ndarray:
    """The input enlarged by repeating each pixel: what the input itself holds, at the output's size."""
    return np.repeat(np.repeat(small, scale, 0), scale, 1)


def crop_gains(truth, bicubic, sr, scale: int, window: int = WINDOW, near=None) -> list[dict]:
    """PSNR on Y of bicubic and model (and of the nearest-neighbour input, when given) in each window
    (border shaved like the protocol), with the model's gain over bicubic."""
    yt = rgb_to_y(truth).astype(np.float64)
    named = {"bicubic": bicubic, "model": sr, **({"nearest": near} if near is not None else {})}
    ys = {k: rgb_to_y(a).astype(np.float64) for k, a in named.items()}
    h, w = yt.shape
    out = []
    for y in range(scale, h - scale - window + 1, window):
        for x in range(scale, w - scale - window + 1, window):
            box = np.s_[y:y + window, x:x + window]
            row = {"y": y, "x": x, "size": window}
            for k, a in ys.items():
                row[f"{k}_psnr"] = 10 * math.log10(255 ** 2 / max(float(np.mean((a[box] - yt[box]) ** 2)), 1e-10))
            out.append({**row, "gain": row["model_psnr"] - row["bicubic_psnr"]})
    return out


def _power(y: np.ndarray) -> np.ndarray:
    """Power spectrum of a luminance image, Hann-windowed (no edge leakage), zero frequency at the centre."""
    hann = np.outer(np.hanning(y.shape[0]), np.hanning(y.shape[1]))
    return np.abs(np.fft.fftshift(np.fft.fft2((y - y.mean()) * hann))) ** 2


def _radius(shape) -> np.ndarray:
    """Spatial frequency of each spectrum bin in cycles per pixel (0 .. 0.5 along each axis)."""
    fy = np.fft.fftshift(np.fft.fftfreq(shape[0]))
    fx = np.fft.fftshift(np.fft.fftfreq(shape[1]))
    return np.hypot(*np.meshgrid(fy, fx, indexing="ij"))


def spectra(truth, bicubic, sr, scale: int, bins: int = 48) -> dict:
    """Radial spectra (mean power per ring, 0..0.5 cycles/pixel) and the high-band numbers above the
    input's Nyquist limit, 0.5/scale cycles per output pixel."""
    ys = {k: rgb_to_y(a).astype(np.float64) for k, a in (("truth", truth), ("bicubic", bicubic), ("model", sr))}
    powers = {k: _power(y) for k, y in ys.items()}
    r = _radius(truth.shape[:2])
    edges = np.linspace(0, 0.5, bins + 1)
    ring = np.digitize(r, edges) - 1
    inside = (ring >= 0) & (ring < bins)
    counts = np.maximum(np.bincount(ring[inside], minlength=bins), 1)
    curves = {k: (np.bincount(ring[inside], p[inside], minlength=bins) / counts).tolist() for k, p in powers.items()}
    limit = 0.5 / scale
    high = (r > limit) & (r <= 0.5)
    energy = {k: float(p[high].sum()) for k, p in powers.items()}

    def high_band(y):   # the part of a luminance image above the limit, back in pixel space
        f = np.fft.fftshift(np.fft.fft2(y - y.mean()))
        return np.real(np.fft.ifft2(np.fft.ifftshift(np.where(r > limit, f, 0))))

    ht, hb, hm = (high_band(ys[k]) for k in ("truth", "bicubic", "model"))
    corr = lambda a, b: float(np.sum(a * b) / math.sqrt(max(np.sum(a * a) * np.sum(b * b), 1e-20)))
    return {"frequency": ((edges[:-1] + edges[1:]) / 2).tolist(), "curves": curves, "nyquist": limit,
            "model_energy_share": energy["model"] / max(energy["truth"], 1e-20),
            "bicubic_energy_share": energy["bicubic"] / max(energy["truth"], 1e-20),
            "model_high_correlation": corr(hm, ht), "bicubic_high_correlation": corr(hb, ht)}


def jpeg(img: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def blur(img: np.ndarray, sigma: float = BLUR_SIGMA) -> np.ndarray:
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(sigma)))


def degradations(model, truth, small, scale: int, bicubic, sr) -> list[dict]:
    """The self-check (bicubic and sr: its outputs) next to degraded inputs: JPEG, blur, and a photo as
    `rcan-evaluate --degrade` makes them (blur, noise and JPEG, seeded): the gain over bicubic on each."""
    photo = testset.decode(testset.degrade_photo(truth, scale, testset.rng_for(0, "self-check"))[0])
    rows = []
    for name, degraded in (("bicubic (clean)", None), (f"JPEG quality {JPEG_QUALITY}", jpeg(small)),
                           (f"blurred (Gaussian σ {BLUR_SIGMA} px)", blur(small)),
                           ("a degraded photo (blur, noise, JPEG: rcan-evaluate --degrade)", photo)):
        b = psnr(truth, bicubic if degraded is None else imresize(degraded, scale), scale)
        m = psnr(truth, sr if degraded is None else enlarge(model, degraded), scale)
        rows.append({"input": name, "bicubic_psnr": b, "model_psnr": m, "gain": m - b})
    return rows


def bicubic_loss(truth, scales=(2, 4)) -> list[dict]:
    """What bicubic loses at each scale on this image: shrink, enlarge back, PSNR against the truth."""
    rows = []
    for s in scales:
        t = truth[: truth.shape[0] - truth.shape[0] % s, : truth.shape[1] - truth.shape[1] % s]
        if min(t.shape[:2]) >= 2 * s + 2:
            rows.append({"scale": s, "bicubic_psnr": psnr(t, imresize(imresize(t, 1 / s), s), s)})
    return rows


def self_check(model, truth: np.ndarray, scale: int) -> dict:
    """All the measurements on one truth image (uint8 H×W×3, a multiple of scale); images kept for figures."""
    small = imresize(truth, 1 / scale)          # uint8 in, uint8 out: an 8-bit input, as a user's file is
    bicubic = imresize(small, scale)
    sr = enlarge(model, small)
    near = nearest(small, scale)
    gains = crop_gains(truth, bicubic, sr, scale, near=near)
    record = {"hr_height": truth.shape[0], "hr_width": truth.shape[1],
              "model_psnr": psnr(truth, sr, scale), "bicubic_psnr": psnr(truth, bicubic, scale),
              "spectrum": spectra(truth, bicubic, sr, scale),
              "degradations": degradations(model, truth, small, scale, bicubic, sr),
              "bicubic_loss": bicubic_loss(truth),
              "images": {"truth": truth, "small": small, "nearest": near, "bicubic": bicubic, "model": sr}}
    if gains:
        # The worst among the windows with detail to restore (bicubic at or below its median PSNR): a flat
        # patch of sky, which bicubic already gets right, would say nothing about the model.
        hard = [g for g in gains if g["bicubic_psnr"] <= float(np.median([g["bicubic_psnr"] for g in gains]))]
        record["best"] = max(gains, key=lambda g: g["gain"])
        record["worst"] = min(hard, key=lambda g: g["gain"])
    return record
