"""The evaluation protocol of the RCAN paper, in NumPy, reproducing the official MATLAB scripts.

- imresize: MATLAB's bicubic (Keys cubic, a = -0.5), antialiased when shrinking, replicate borders,
  rows first; for uint8 images each 1-D pass is rounded half away from zero and clipped, as MATLAB
  does. This regenerates the official LR PNGs bit for bit.
- rgb_to_y: MATLAB rgb2ycbcr (BT.601, 16..235) of im2double, kept unrounded.
- psnr / ssim: on Y, `scale` pixels shaved from every border; SSIM of Wang et al. 2004.
"""
from __future__ import annotations

import math

import numpy as np


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB imresize 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def resize_weights(in_len: int, out_len: int, scale: float, antialias: bool = True):
    """For each output sample: the input indices (0-based, edge-clamped) and normalised weights."""
    width = 4.0
    if scale < 1 and antialias:
        kernel = lambda x: scale * cubic(scale * x)   # stretched by 1/scale: a low-pass before sampling
        width = width / scale
    else:
        kernel = cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)             # the output pixel's centre in input coordinates
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]    # 1-based, [out_len, taps]
    w = kernel(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    idx = np.clip(idx, 1, in_len).astype(np.int64) - 1  # replicate the border pixels
    return idx, w


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float, quantize: bool) -> np.ndarray:
    idx, w = resize_weights(img.shape[axis], out_len, scale)
    x = np.moveaxis(img, axis, 0).astype(np.float64)
    out = np.einsum("ot,ot...->o...", w, x[idx])      # gather the taps, weight, sum
    if quantize:
        # MATLAB rounds half away from zero when it converts back to uint8 after every pass.
        out = np.clip(np.floor(out + 0.5), 0, 255)
    return np.moveaxis(out, 0, axis)


def imresize(img: np.ndarray, scale: float | None = None, output_shape=None) -> np.ndarray:
    """MATLAB imresize(img, scale, 'bicubic'). uint8 in -> uint8 out (per-pass rounding); float in ->
    float64 out (no rounding). Give a scale factor or an (H, W) output shape."""
    img = np.asarray(img)
    H, W = img.shape[:2]
    if output_shape is None:
        if scale is None:
            raise ValueError("give scale or output_shape")
        output_shape = (int(math.ceil(H * scale)), int(math.ceil(W * scale)))
        scales = (scale, scale)
    else:
        scales = (output_shape[0] / H, output_shape[1] / W) if scale is None else (scale, scale)
    quantize = img.dtype == np.uint8
    # MATLAB resizes the dimension with the smaller scale first; rows (dim 1) on a tie.
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    out = img
    for axis in order:
        out = _resize_axis(out, axis, output_shape[axis], scales[axis], quantize)
    return out.astype(np.uint8) if quantize else out


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop to a multiple of scale, keeping the top-left corner (official Prepare_TestData_HR_LR.m)."""
    H, W = img.shape[:2]
    return img[: H - H % scale, : W - W % scale]


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Y of MATLAB rgb2ycbcr(im2double(img)) × 255: 16 + 65.481 R + 128.553 G + 24.966 B, R..B in [0, 1].

    The official script keeps it in single precision (single(rgb2ycbcr(...))): so do we.
    """
    img = np.asarray(img)
    if img.ndim == 2:
        return img.astype(np.float32)
    rgb = img[..., :3].astype(np.float64) / 255.0
    y = (16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0
    return (y.astype(np.float32) * np.float32(255)).astype(np.float32)


def shave(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border] if border else img


def _check_pair(hr, sr):
    if hr.shape[:2] != sr.shape[:2]:
        raise ValueError(f"image sizes differ: HR {hr.shape[1]}x{hr.shape[0]} vs SR {sr.shape[1]}x{sr.shape[0]}")


def psnr(hr: np.ndarray, sr: np.ndarray, scale: int) -> float:
    """PSNR on Y (peak 255) with `scale` pixels shaved; inf for identical images."""
    _check_pair(hr, sr)
    a = shave(rgb_to_y(hr), scale).astype(np.float64)
    b = shave(rgb_to_y(sr), scale).astype(np.float64)
    mse = np.mean((a - b) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """MATLAB fspecial('gaussian', size, sigma) as the normalised 1-D factor (the 2-D window is its outer product)."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """filter2(outer(g, g), img, 'valid'), separably: rows, then columns."""
    k = len(g)
    rows = np.lib.stride_tricks.sliding_window_view(img, k, axis=0) @ g     # [H-k+1, W]
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=1) @ g    # [H-k+1, W-k+1]


def ssim(hr: np.ndarray, sr: np.ndarray, scale: int, K1: float = 0.01, K2: float = 0.03, L: float = 255) -> float:
    """SSIM (Wang et al. 2004, ssim_index.m) on Y with `scale` pixels shaved: mean of the SSIM map."""
    _check_pair(hr, sr)
    a = shave(rgb_to_y(hr), scale).astype(np.float64)
    b = shave(rgb_to_y(sr), scale).astype(np.float64)
    g = gaussian_window()
    C1, C2 = (K1 * L) ** 2, (K2 * L) ** 2
    mu1, mu2 = _filter_valid(a, g), _filter_valid(b, g)
    s11 = _filter_valid(a * a, g) - mu1 * mu1
    s22 = _filter_valid(b * b, g) - mu2 * mu2
    s12 = _filter_valid(a * b, g) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) / ((mu1 * mu1 + mu2 * mu2 + C1) * (s11 + s22 + C2))
    return float(ssim_map.mean())


def quantize(sr: np.ndarray, rgb_range: float = 255, bits: int = 8) -> np.ndarray:
    """As the official code saves: clamp to [0, rgb_range], round half to even, to uint8/uint16."""
    top = 2 ** bits - 1
    q = np.round(np.clip(sr, 0, rgb_range) * (top / rgb_range))
    return q.astype(np.uint8 if bits == 8 else np.uint16)
