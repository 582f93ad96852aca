"""Image files in and out with Pillow: every mode through the RGB model, nothing lost on the way.

- RGB as is; L and I;16 (16-bit grayscale) replicated to RGB and brought back to one channel;
  LA / RGBA: colour through the model, alpha resized with bicubic and reattached; P to RGB(A);
  CMYK to RGB; EXIF orientation applied; the ICC profile kept.
- 16-bit data is scaled to the model's 0..255 range as float (no 8-bit round trip) and back to 16 bits.
- Animated GIF / APNG / WebP and multi-page TIFF: every frame, with its duration and the loop count.
- Writes are atomic: a temporary file in the target folder, then a rename (or, without --force, an
  exclusive link, so a file that appeared meanwhile is never replaced).
"""
from __future__ import annotations

import dataclasses
import os
import re
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps, ImageSequence

from reference.metrics import quantize
from reference.support.files import atomic_write

FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "tif": "TIFF", "bmp": "BMP",
           "gif": "GIF"}
ANIMATED = {"PNG", "WEBP", "TIFF", "GIF"}   # formats that hold several frames (APNG, animated WebP, pages)
IMAGE_SUFFIXES = frozenset("." + ext for ext in FORMATS)   # what folder walks pick up (inputs, training data)


class ImageError(ValueError):
    """An image that cannot be read, converted or written (the message says why)."""


@dataclasses.dataclass
class Decoded:
    rgb: np.ndarray            # float32 [H, W, 3] in 0..255
    mode: str                  # what to give back: RGB, L, LA, RGBA, I;16
    alpha: Image.Image | None  # the alpha channel, for LA / RGBA
    icc: bytes | None
    bits: int                  # 8 or 16


def open_image(path, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode (so a truncated file fails here), with the decompression-bomb limit.
    Only regular files: a FIFO or a device named like an image would block or never end."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except OSError as e:
        raise ImageError(f"cannot read: {e.strerror or e}") from None
    if stat.S_ISDIR(mode):
        raise ImageError("is a folder")
    if not stat.S_ISREG(mode):
        raise ImageError("not a regular file")
    old = Image.MAX_IMAGE_PIXELS
    if max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        m = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
        raise ImageError(f"image has {size}, over the {Image.MAX_IMAGE_PIXELS:,}-pixel safety limit "
                         "(raise it with --max-pixels)") from None
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except IsADirectoryError:
        raise ImageError("is a folder") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot decode: {e}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old
    return im


def decode(im: Image.Image) -> Decoded:
    icc = im.info.get("icc_profile")
    im = ImageOps.exif_transpose(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode == "CMYK":
        im = im.convert("RGB")
        icc = None  # a CMYK profile does not describe the RGB result
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im).astype(np.float32)
        if im.mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageError(f"32-bit integer image with values {a.min():.0f}..{a.max():.0f}, outside 0..65535: "
                             "not supported (convert it to 16 bits first)")
        if im.mode == "I" and a.max(initial=0) <= 255:
            bits, scale = 8, 1.0
        else:
            bits, scale = 16, 255.0 / 65535.0
        g = a * scale
        return Decoded(np.repeat(g[..., None], 3, axis=2), "I;16" if bits == 16 else "L", None, icc, bits)
    if im.mode == "1":
        im = im.convert("L")
    if im.mode in ("L", "LA"):
        g = np.asarray(im.getchannel("L"), np.float32)
        alpha = im.getchannel("A") if im.mode == "LA" else None
        return Decoded(np.repeat(g[..., None], 3, axis=2), im.mode, alpha, icc, 8)
    if im.mode in ("RGB", "RGBA"):
        alpha = im.getchannel("A") if im.mode == "RGBA" else None
        return Decoded(np.asarray(im.convert("RGB"), np.float32), im.mode, alpha, icc, 8)
    if im.mode in ("RGBa", "La", "YCbCr", "LAB", "HSV"):
        target = "RGBA" if im.mode in ("RGBa",) else ("LA" if im.mode == "La" else "RGB")
        return decode(im.convert(target))
    raise ImageError(f"unsupported image mode {im.mode}")


def encode(sr: np.ndarray, d: Decoded, scale: int) -> Image.Image:
    """The model's float output back to an image of the input's mode and bit depth."""
    if d.bits == 16:
        q = quantize(sr, bits=16)
        # Gray in, gray out: the three channels of a gray input stay (nearly) equal; take their mean.
        g = np.round(q.astype(np.float64).mean(axis=2)).astype(np.uint16)
        return Image.fromarray(g)  # mode I;16
    rgb = Image.fromarray(quantize(sr), "RGB")
    if d.mode in ("L", "LA"):
        out = rgb.convert("L")
    else:
        out = rgb
    if d.alpha is not None:
        a = d.alpha.resize((out.width, out.height), Image.BICUBIC)
        out = Image.merge("LA" if d.mode == "LA" else "RGBA", (*out.split(), a))
    return out


def decode_array(a: np.ndarray) -> Decoded:
    """An HW / HWC (1, 3 or 4 channels) array, uint8, uint16 or float in 0..255, as the model's input."""
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ImageError(f"array must be HW, HW1, HW3 or HW4; got shape {a.shape}")
    if a.dtype.kind not in "uif" or a.dtype.itemsize > 8:
        raise ImageError(f"array must hold numbers (uint8, uint16 or float in 0..255), not {a.dtype}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ImageError("array holds NaN or infinite values")
    if a.dtype == np.uint16:
        rgb = a[..., :3].astype(np.float32) * (255 / 65535)
    else:
        rgb = a[..., :3].astype(np.float32)
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    return Decoded(rgb, "array", None, None, 16 if a.dtype == np.uint16 else 8)


def encode_array(sr: np.ndarray, like: np.ndarray) -> np.ndarray:
    """The model's output as an array of the input's dtype and channel layout (alpha resized bicubic)."""
    if like.dtype in (np.uint8, np.uint16):
        out = quantize(sr, bits=8 * like.dtype.itemsize)
    else:
        out = sr.astype(like.dtype)
    if like.ndim == 2 or like.shape[-1] == 1:           # gray in, gray out
        gray = out.astype(np.float64).mean(axis=2)
        out = (gray.round() if out.dtype.kind == "u" else gray).astype(out.dtype)
        return out if like.ndim == 2 else out[..., None]
    if like.shape[-1] == 4:
        h, w = sr.shape[:2]
        alpha = Image.fromarray(like[..., 3].astype(np.float32)).resize((w, h), Image.BICUBIC)
        a = np.asarray(alpha)
        if like.dtype.kind == "u":
            top = np.iinfo(like.dtype).max
            a = quantize(a, rgb_range=top, bits=8 * like.dtype.itemsize)
        out = np.concatenate([out, a[..., None].astype(out.dtype)], axis=2)
    return out


def frames(im: Image.Image) -> tuple[list[Image.Image], dict]:
    """The frames of an animated or multi-page image (one for a still image), each fully decoded, and
    what saving them needs again: per-frame durations (ms) and the loop count."""
    n = getattr(im, "n_frames", 1)
    if n <= 1:
        return [im], {}
    out, durations = [], []
    try:
        for frame in ImageSequence.Iterator(im):
            durations.append(frame.info.get("duration", im.info.get("duration", 100)))
            out.append(frame.copy())
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot decode frame {len(out) + 1} of {n}: {e}") from None
    return out, {"duration": durations, "loop": im.info.get("loop", 0)}


def save_atomic(im, path, fmt: str, icc: bytes | None = None, overwrite: bool = True,
                animation: dict | None = None) -> None:
    """Write to a temporary file beside the target, then publish it: never a half-written output.
    im: an image, or a list of frames (then `animation` holds their durations and loop count).
    overwrite=False: fail with FileExistsError if the target exists when the file is published."""
    images = im if isinstance(im, list) else [im]
    pil_fmt = FORMATS[fmt]
    first = images[0]
    if pil_fmt == "JPEG" and first.mode in ("LA", "RGBA"):
        raise ImageError("JPEG has no alpha channel: choose --format png, webp or tiff")
    if pil_fmt == "JPEG" and first.mode == "I;16":
        raise ImageError("JPEG cannot hold 16-bit data: choose --format png or tiff")
    if pil_fmt in ("WEBP", "BMP", "GIF") and first.mode == "I;16":
        raise ImageError(f"{pil_fmt} cannot hold 16-bit data: choose --format png or tiff")
    if len(images) > 1 and pil_fmt not in ANIMATED:
        raise ImageError(f"an animated image ({len(images)} frames) needs --format png, webp, gif or tiff, "
                         f"not {fmt}")
    kwargs = {}
    if icc and pil_fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kwargs["icc_profile"] = icc
    if pil_fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = 95   # visually lossless for JPEG and lossy WebP
    if len(images) > 1:
        kwargs.update(save_all=True, append_images=images[1:], **(animation or {}))
    atomic_write(path, lambda tmp: first.save(tmp, format=pil_fmt, **kwargs), overwrite=overwrite)
