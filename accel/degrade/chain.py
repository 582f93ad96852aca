"""Real-photo degradations in JAX: from a clean HR crop to the LR input a phone or the web would give.

A second-order chain after Real-ESRGAN (Wang et al. 2021; xinntao/Real-ESRGAN
options/train_realesrnet_x4plus.yml, XPixelGroup/BasicSR basicsr/data/degradations.py), sized for ×2
and for the photos people enlarge, all per sample, jitted, with static shapes:

    HR ─ round 1 (at HR size): blur → random resize → noise → JPEG
       ─ resize to LR (area / bilinear / bicubic)
       ─ round 2 (at LR size): blur (p) → random resize → noise
       ─ final: sinc ringing (p) and JPEG, in a random order                    → LR

A share of the samples (Degradations.clean) keeps the MATLAB-bicubic LR, so clean inputs stay served. The
HR target is never touched. Every draw comes from the sample's key, so a batch is a pure function of it.

Static shapes: kernels live on a 21×21 grid (a smaller kernel is that grid with zeros outside its
support); a random resize by s is the resample to s× and back to the working size, written as one
matrix per axis built from s (the size between is dynamic, the matrices are not), so noise and JPEG of
round 1 and 2 act at the working size rather than at s× it (the final JPEG, at LR size, is exact).
JPEG is baseline libjpeg as Pillow writes it by default: 8-bit YCbCr (JFIF), 4:2:0, 8×8 DCT, the IJG
tables scaled by quality, rounding; decoded with libjpeg's "fancy" (triangle) chroma upsampling.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

KERNEL = 21   # side of every blur kernel's grid (sizes 7..21 are masks on it)
# Kernel families and their probabilities (Real-ESRGAN's kernel_list / kernel_prob)
FAMILIES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
FAMILY_PROBS = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
RESIZE_METHODS = ("area", "bilinear", "bicubic")


@dataclasses.dataclass(frozen=True)
class Degradations:
    """The ranges of the chain (intervals are uniform draws). Real-ESRGAN's ×4 values, milder where a ×2
    model and everyday photos ask for it: blur σ up to 2 instead of 3 (the LR pixel is half the size),
    noise up to σ 12 instead of 30, JPEG from quality 40 instead of 30."""
    clean: float = 0.2                       # share of samples with the clean MATLAB-bicubic LR
    # round 1, at HR size
    sinc1: float = 0.1
    sigma1: tuple[float, float] = (0.2, 2.0)
    resize1: tuple[float, float, float] = (0.2, 0.5, 0.3)   # up / down / keep
    up1: tuple[float, float] = (1.0, 1.3)
    down1: tuple[float, float] = (0.5, 1.0)
    noisy1: float = 1.0                      # share of samples given round 1's noise
    gaussian1: float = 0.5                   # Gaussian, else Poisson noise
    noise1: tuple[float, float] = (1.0, 12.0)    # σ in grey levels
    poisson1: tuple[float, float] = (0.05, 1.0)
    grey1: float = 0.4
    jpeg1_prob: float = 1.0                  # share of samples given round 1's JPEG
    jpeg1: tuple[float, float] = (50.0, 95.0)
    # the shrink to LR: area / bilinear / bicubic probabilities (None: one in three each)
    down: tuple[float, float, float] | None = None
    # round 2, at LR size
    blur2: float = 0.5
    sinc2: float = 0.1
    sigma2: tuple[float, float] = (0.2, 1.0)
    resize2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    up2: tuple[float, float] = (1.0, 1.2)
    down2: tuple[float, float] = (0.7, 1.0)
    noisy2: float = 1.0
    gaussian2: float = 0.5
    noise2: tuple[float, float] = (1.0, 8.0)
    poisson2: tuple[float, float] = (0.05, 0.8)
    grey2: float = 0.4
    # final
    final_sinc: float = 0.5
    jpeg2: tuple[float, float] = (40.0, 95.0)


# The chains by name (`rcan-train --degrade`). "real" is the second-order chain above, for harsh inputs.
# "photo" is milder, for the photos people enlarge: mostly one blur before the shrink, the noise at LR size
# (after a phone's processing, where the held-out set has it too), one JPEG at the end, a second round and a
# first JPEG only for a share of the samples. Its ranges cover the everyday ones with room on each side: blur σ
# to 1.6 HR pixels, noise σ to 6, JPEG quality 45–95.
CHAINS = {
    "real": Degradations(),
    "photo": Degradations(
        clean=0.15, sinc1=0.05, sigma1=(0.1, 1.6), resize1=(0.1, 0.2, 0.7), up1=(1.0, 1.2), down1=(0.7, 1.0),
        noisy1=0.3, noise1=(0.5, 4.0), poisson1=(0.05, 0.5), jpeg1_prob=0.2, jpeg1=(60.0, 95.0),
        blur2=0.2, sinc2=0.05, sigma2=(0.2, 0.8), resize2=(0.1, 0.2, 0.7), up2=(1.0, 1.1), down2=(0.8, 1.0),
        noisy2=0.8, noise2=(0.5, 6.0), poisson2=(0.05, 0.6), final_sinc=0.1, jpeg2=(45.0, 95.0)),
    # "mild": one round, as a phone or a camera app makes a photo and a messenger re-saves it: a blur before the
    # shrink (σ 0.2–1.3 HR px, every kernel family), mostly bicubic's shrink, sensor noise at LR size
    # (σ to 4.5), one JPEG at quality 55–95; nothing else. 10 % of the samples kept clean.
    "mild": Degradations(
        clean=0.1, sinc1=0.0, sigma1=(0.2, 1.3), resize1=(0.0, 0.0, 1.0), noisy1=0.0, jpeg1_prob=0.0,
        down=(0.1, 0.1, 0.8), blur2=0.0, resize2=(0.0, 0.0, 1.0), noisy2=0.9, gaussian2=0.85,
        noise2=(0.3, 4.5), poisson2=(0.05, 0.4), grey2=0.3, final_sinc=0.0, jpeg2=(55.0, 95.0)),
}


def table(chain: str = "real") -> list[tuple[str, str, str]]:
    """(step, round 1, round 2 / final) rows describing a chain of CHAINS, for model cards."""
    d = CHAINS[chain]
    rng = lambda r: f"{r[0]:g}–{r[1]:g}"   # noqa: E731
    fam = ", ".join(f"{f} {p:g}" for f, p in zip(FAMILIES, FAMILY_PROBS))
    return [
        ("clean MATLAB-bicubic LR", f"{d.clean:.0%} of samples", ""),
        ("blur (21×21 grid, sizes 7–21)", f"sinc p {d.sinc1:g}, else {fam}; σ {rng(d.sigma1)} HR px",
         f"p {d.blur2:g}; sinc p {d.sinc2:g}; σ {rng(d.sigma2)} LR px"),
        ("resize (and back)", f"up/down/keep {'/'.join(f'{p:g}' for p in d.resize1)}; up {rng(d.up1)}, "
         f"down {rng(d.down1)}; area/bilinear/bicubic",
         f"{'/'.join(f'{p:g}' for p in d.resize2)}; up {rng(d.up2)}, down {rng(d.down2)}"),
        ("to LR ×½", "", "area / bilinear / bicubic" + (f" p {'/'.join(f'{p:g}' for p in d.down)}" if d.down
                                                        else "")),
        ("noise", f"p {d.noisy1:g}: Gaussian σ {rng(d.noise1)} (p {d.gaussian1:g}) or Poisson ×{rng(d.poisson1)}; "
                  f"grey p {d.grey1:g}",
         f"p {d.noisy2:g}: Gaussian σ {rng(d.noise2)} or Poisson ×{rng(d.poisson2)}; grey p {d.grey2:g}"),
        ("JPEG (4:2:0)", f"p {d.jpeg1_prob:g}: quality {rng(d.jpeg1)}",
         f"final: sinc (p {d.final_sinc:g}) and quality {rng(d.jpeg2)}, in a random order"),
    ]


# --- blur kernels ------------------------------------------------------------------------------------

def _grid():
    r = jnp.arange(KERNEL, dtype=jnp.float32) - KERNEL // 2
    return jnp.meshgrid(r, r, indexing="ij")   # (y, x), each [21, 21]


def bessel_j1(x):
    """J1(x) = (1/π) ∫₀^π cos(τ − x sin τ) dτ, by the midpoint rule: the integrand is smooth and periodic,
    so 128 nodes give float32 accuracy for |x| < 60 (the sinc kernels need |x| ≤ π·10√2 ≈ 44)."""
    n = 128
    tau = (jnp.arange(n, dtype=jnp.float32) + 0.5) * (math.pi / n)
    return jnp.mean(jnp.cos(tau - x[..., None] * jnp.sin(tau)), axis=-1)


def support(size):
    """1 inside a size×size square centred on the grid (size odd, 7..21), else 0."""
    y, x = _grid()
    half = (size - 1) / 2
    return ((jnp.abs(y) <= half) & (jnp.abs(x) <= half)).astype(jnp.float32)


def anisotropic_distance(sigma_x, sigma_y, theta):
    """xᵀ Σ⁻¹ x on the grid for Σ = R(θ) diag(σx², σy²) R(θ)ᵀ."""
    y, x = _grid()
    c, s = jnp.cos(theta), jnp.sin(theta)
    u, v = c * x + s * y, -s * x + c * y     # coordinates along the kernel's own axes
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def gaussian_kernel(d2, family, beta):
    """The shape of a family on squared distances d2: 0/1 Gaussian, 2/3 generalized Gaussian
    exp(−½ d2^β), 4/5 plateau 1 / (1 + d2^β) (BasicSR's bivariate_* kernels)."""
    gen = jnp.exp(-0.5 * jnp.power(d2, beta))
    plateau = 1.0 / (1.0 + jnp.power(d2, beta))
    return jnp.where(family < 2, jnp.exp(-0.5 * d2), jnp.where(family < 4, gen, plateau))


def sinc_kernel(omega):
    """The circular low-pass (ideal 2-D sinc) of cut-off ω rad/pixel: ω J1(ω r) / (2π r), ω²/(4π) at r = 0;
    its ripples are the ringing of over-sharpened and resampled photos."""
    y, x = _grid()
    r = jnp.hypot(x, y)
    safe = jnp.where(r == 0, 1.0, r)
    return jnp.where(r == 0, omega ** 2 / (4 * math.pi), omega * bessel_j1(omega * safe) / (2 * math.pi * safe))


def normalised(k, mask):
    k = k * mask
    return k / jnp.sum(k)


def identity_kernel():
    y, x = _grid()
    return ((y == 0) & (x == 0)).astype(jnp.float32)


def random_kernel(key, sigma: tuple[float, float], sinc_prob: float):
    """One blur kernel [21, 21] summing to 1, drawn as Real-ESRGAN draws them."""
    k = jax.random.split(key, 8)
    size = 2 * jax.random.randint(k[0], (), 3, KERNEL // 2 + 1) + 1          # 7, 9, …, 21
    mask = support(size)
    family = jax.random.choice(k[1], len(FAMILIES), p=jnp.array(FAMILY_PROBS))
    aniso = family % 2 == 1
    sx = jax.random.uniform(k[2], (), minval=sigma[0], maxval=sigma[1])
    sy = jnp.where(aniso, jax.random.uniform(k[3], (), minval=sigma[0], maxval=sigma[1]), sx)
    theta = jnp.where(aniso, jax.random.uniform(k[4], (), minval=-math.pi, maxval=math.pi), 0.0)
    beta = jnp.where(family < 4, jax.random.uniform(k[5], (), minval=0.5, maxval=4.0),
                     jax.random.uniform(k[5], (), minval=1.0, maxval=2.0))
    blur = normalised(gaussian_kernel(anisotropic_distance(sx, sy, theta), family, beta), mask)
    # Cut-offs as BasicSR: a small kernel cannot hold the ripples of a low cut-off.
    omega = jax.random.uniform(k[6], (), minval=jnp.where(size < 13, math.pi / 3, math.pi / 5), maxval=math.pi)
    ring = normalised(sinc_kernel(omega), mask)
    return jnp.where(jax.random.uniform(k[7]) < sinc_prob, ring, blur)


def random_sinc(key, prob: float):
    """The final step's sinc kernel with probability prob, else the identity."""
    k = jax.random.split(key, 3)
    size = 2 * jax.random.randint(k[0], (), 3, KERNEL // 2 + 1) + 1
    omega = jax.random.uniform(k[1], (), minval=math.pi / 3, maxval=math.pi)
    ring = normalised(sinc_kernel(omega), support(size))
    return jnp.where(jax.random.uniform(k[2]) < prob, ring, identity_kernel())


def filter2d(img, kernel):
    """img [H, W, C] convolved with kernel [21, 21] per channel, reflect-padded (as BasicSR's filter2D).
    Through the FFT: XLA's CPU depthwise convolution with a per-sample 21×21 kernel took 20× longer. The
    padded image's circular convolution equals the linear one on the H×W centre (no tap wraps around)."""
    pad = KERNEL // 2
    x = jnp.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    h, w = x.shape[:2]
    # the kernel's centre at (0, 0), so the product's result is aligned with the image
    k = jnp.roll(jnp.pad(kernel[::-1, ::-1], ((0, h - KERNEL), (0, w - KERNEL))), (-pad, -pad), (0, 1))
    out = jnp.fft.irfft2(jnp.fft.rfft2(x, axes=(0, 1)) * jnp.fft.rfft2(k)[:, :, None], s=(h, w), axes=(0, 1))
    return out[pad:h - pad, pad:w - pad]


# --- resizing ----------------------------------------------------------------------------------------

def _taps(x, method):
    """Interpolation kernels by method index: 0 area (box), 1 bilinear (triangle), 2 bicubic (Keys, a = −0.5)."""
    ax = jnp.abs(x)
    box = (ax < 0.5).astype(jnp.float32)
    tri = jnp.maximum(1 - ax, 0)
    cub = jnp.where(ax <= 1, 1.5 * ax ** 3 - 2.5 * ax ** 2 + 1,
                    jnp.where(ax <= 2, -0.5 * ax ** 3 + 2.5 * ax ** 2 - 4 * ax + 2, 0.0))
    return jnp.where(method == 0, box, jnp.where(method == 1, tri, cub))


def resize_matrix(n_out: int, n_in: int, valid_in, valid_out, method):
    """[n_out, n_in]: resample a signal of valid_in samples (of n_in slots) to valid_out samples (rows past
    it are zero), pixel centres aligned. Shrinking stretches the kernel (antialiasing) for area and bicubic;
    bilinear does not, as torch's and OpenCV's defaults do not (their aliasing is part of what photos have)."""
    scale = valid_out / valid_in
    i = jnp.arange(n_out, dtype=jnp.float32)
    j = jnp.arange(n_in, dtype=jnp.float32)
    centre = (i + 0.5) / scale - 0.5
    stretch = jnp.where((scale < 1) & (method != 1), scale, 1.0)
    w = _taps((centre[:, None] - j[None, :]) * stretch, method) * (j[None, :] < valid_in)
    # Rows whose taps all fall outside (a box centred between samples) take the nearest sample.
    nearest = (j[None, :] == jnp.clip(jnp.round(centre), 0, valid_in - 1)[:, None]).astype(jnp.float32)
    total = jnp.sum(w, axis=1, keepdims=True)
    w = jnp.where(jnp.abs(total) > 1e-6, w / jnp.where(jnp.abs(total) > 1e-6, total, 1.0), nearest)
    return w * (i[:, None] < valid_out)


def resize_and_back(img, s, method):
    """img [n, n, C] resampled to round(s·n) and back to n, as one matrix per axis (static shapes)."""
    n = img.shape[0]
    slots = int(math.ceil(n * 1.5))                           # room for the largest up-scale drawn
    m = jnp.clip(jnp.round(s * n), 2, slots)
    a = resize_matrix(n, slots, m, n, method) @ resize_matrix(slots, n, n, m, method)
    return jnp.einsum("ij,jkc,lk->ilc", a, img, a, precision=jax.lax.Precision.HIGHEST)


def random_resize(key, img, probs, up, down):
    k = jax.random.split(key, 4)
    kind = jax.random.choice(k[0], 3, p=jnp.array(probs))     # up / down / keep
    s = jnp.where(kind == 0, jax.random.uniform(k[1], (), minval=up[0], maxval=up[1]),
                  jnp.where(kind == 1, jax.random.uniform(k[2], (), minval=down[0], maxval=down[1]), 1.0))
    method = jax.random.randint(k[3], (), 0, 3)
    return jnp.where(kind == 2, img, resize_and_back(img, s, method))


def downscale(key, img, scale: int, probs=None):
    """img [sH, sW, C] to [H, W, C] by a random method (area / bilinear / bicubic, uniform unless probs)."""
    n = img.shape[0]
    method = jax.random.randint(key, (), 0, 3) if probs is None else jax.random.choice(key, 3, p=jnp.array(probs))
    a = resize_matrix(n // scale, n, n, n // scale, method)
    return jnp.einsum("ij,jkc,lk->ilc", a, img, a, precision=jax.lax.Precision.HIGHEST)


# --- noise -------------------------------------------------------------------------------------------

def _grey(img):
    return jnp.sum(img * jnp.array([0.299, 0.587, 0.114]), axis=-1, keepdims=True)


def random_noise(key, img, gaussian_prob, sigma, poisson_scale, grey_prob, prob=1.0):
    """With probability prob, Gaussian (σ in grey levels) or shot noise (an 8-bit sensor's Poisson noise, of
    variance equal to the intensity, times a scale), in colour or the same in every channel (grey); clipped to
    0..255. The shot noise is drawn as the Gaussian of that variance: jax.random.poisson's rejection loop cost
    0.5 s a batch."""
    k = jax.random.split(key, 5)
    grey = jax.random.uniform(k[0]) < grey_prob
    noise = jax.random.normal(k[1], img.shape)
    noise = jnp.where(grey, noise[..., :1], noise)
    s = jax.random.uniform(k[2], (), minval=sigma[0], maxval=sigma[1])
    scale = jax.random.uniform(k[3], (), minval=poisson_scale[0], maxval=poisson_scale[1])
    shot = scale * jnp.sqrt(jnp.clip(jnp.where(grey, _grey(img), img), 0, 255))
    noisy = jnp.clip(img + noise * jnp.where(jax.random.uniform(k[4]) < gaussian_prob, s, shot), 0, 255)
    return jnp.where(jax.random.uniform(jax.random.fold_in(key, 5)) < prob, noisy, img)


# --- JPEG --------------------------------------------------------------------------------------------

# The IJG example tables (JPEG standard, Annex K), natural order.
LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float32).reshape(8, 8)
CHROMINANCE = np.full((8, 8), 99, np.float32)
CHROMINANCE[:4, :4] = np.array([17, 18, 24, 47, 18, 21, 26, 66, 24, 26, 56, 99, 47, 66, 99, 99]).reshape(4, 4)


def quality_scaling(quality):
    """libjpeg's jpeg_quality_scaling: quality 1..100 to a percentage of the example tables."""
    q = jnp.clip(quality, 1, 100)
    return jnp.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)


def scaled_table(base, quality):
    """A quantization table as libjpeg scales it (baseline: entries 1..255)."""
    return jnp.clip(jnp.floor((base * quality_scaling(quality) + 50) / 100), 1, 255)


def _dct_matrix():
    k = np.arange(8)
    c = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16) * np.sqrt(2 / 8)
    c[0] /= np.sqrt(2)
    return jnp.asarray(c, jnp.float32)   # orthonormal DCT-II: the JPEG DCT for 8×8 blocks


def _blocks(plane):
    h, w = plane.shape
    return plane.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)


def _unblocks(blocks):
    bh, bw = blocks.shape[:2]
    return blocks.transpose(0, 2, 1, 3).reshape(bh * 8, bw * 8)


def _code_plane(plane, table):
    """Level shift, DCT, quantize (round), dequantize, inverse DCT: one plane's JPEG round trip."""
    c = _dct_matrix()
    hp = jax.lax.Precision.HIGHEST
    coeff = jnp.einsum("uy,abyx,vx->abuv", c, _blocks(plane - 128.0), c, precision=hp)
    coeff = jnp.round(coeff / table) * table
    return _unblocks(jnp.einsum("uy,abuv,vx->abyx", c, coeff, c, precision=hp)) + 128.0


def _fancy_upsample(plane):
    """libjpeg's h2v2 fancy upsampling: each output sample is ¾ the nearer and ¼ the farther chroma sample,
    in each direction (edges replicated)."""
    def axis(p, ax):
        prev = jnp.concatenate([jax.lax.slice_in_dim(p, 0, 1, axis=ax), jax.lax.slice_in_dim(p, 0, -1, axis=ax)], ax)
        nxt = jnp.concatenate([jax.lax.slice_in_dim(p, 1, None, axis=ax), jax.lax.slice_in_dim(p, -1, None, axis=ax)],
                              ax)
        even, odd = 0.75 * p + 0.25 * prev, 0.75 * p + 0.25 * nxt
        return jnp.stack([even, odd], ax + 1).reshape(*p.shape[:ax], -1, *p.shape[ax + 1:])
    return axis(axis(plane, 0), 1)


def jpeg(img, quality):
    """img [H, W, 3] in 0..255 (H, W multiples of 16) through a baseline JPEG encode and decode at this
    quality (1..100); returns the decoded image, float32 holding integers 0..255."""
    rgb = jnp.clip(jnp.round(img), 0, 255)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    y, cb, cr = (jnp.clip(jnp.round(p), 0, 255) for p in (y, cb, cr))
    h, w = y.shape
    sub = lambda p: jnp.round(p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)))   # noqa: E731  4:2:0
    y = jnp.clip(jnp.round(_code_plane(y, scaled_table(LUMINANCE, quality))), 0, 255)
    cb, cr = (_fancy_upsample(jnp.clip(jnp.round(_code_plane(sub(p), scaled_table(CHROMINANCE, quality))), 0, 255))
              for p in (cb, cr))
    out = jnp.stack([y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
                     y + 1.772 * (cb - 128)], axis=-1)
    return jnp.clip(jnp.round(out), 0, 255)


def random_jpeg(key, img, quality_range, prob=1.0):
    coded = jpeg(img, jnp.round(jax.random.uniform(key, (), minval=quality_range[0], maxval=quality_range[1])))
    return jnp.where(jax.random.uniform(jax.random.fold_in(key, 1)) < prob, coded, img)


# --- the chain ---------------------------------------------------------------------------------------

def degrade(key, hr, scale: int, d: Degradations = Degradations()):
    """One sample: hr [sP, sP, 3] float32 in 0..255 -> degraded LR [P, P, 3] (integers 0..255, float32).
    P must be a multiple of 16 (JPEG's 4:2:0 macroblocks)."""
    k = jax.random.split(key, 12)
    x = filter2d(hr, random_kernel(k[0], d.sigma1, d.sinc1))
    x = random_resize(k[1], x, d.resize1, d.up1, d.down1)
    x = random_noise(k[2], x, d.gaussian1, d.noise1, d.poisson1, d.grey1, d.noisy1)
    x = random_jpeg(k[3], x, d.jpeg1, d.jpeg1_prob)
    x = downscale(k[4], x, scale, d.down)
    blur2 = jnp.where(jax.random.uniform(k[5]) < d.blur2, random_kernel(k[6], d.sigma2, d.sinc2), identity_kernel())
    x = filter2d(x, blur2)
    x = random_resize(k[7], x, d.resize2, d.up2, d.down2)
    x = random_noise(k[8], x, d.gaussian2, d.noise2, d.poisson2, d.grey2, d.noisy2)
    sinc = random_sinc(k[9], d.final_sinc)
    sinc_first = jax.random.uniform(k[10]) < 0.5
    q = jnp.round(jax.random.uniform(k[11], (), minval=d.jpeg2[0], maxval=d.jpeg2[1]))
    a = jpeg(filter2d(x, sinc), q)                            # sinc, then JPEG
    b = jnp.clip(jnp.round(filter2d(jpeg(x, q), sinc)), 0, 255)   # JPEG, then sinc
    return jnp.where(sinc_first, a, b)


def degrade_batch(key, lr_clean, hr, scale: int, d: Degradations = Degradations()):
    """A batch's LR: each sample degraded from its HR, or (a share d.clean) its clean bicubic LR."""
    keys = jax.random.split(key, hr.shape[0] + 1)
    out = jax.vmap(lambda k, h: degrade(k, h, scale, d))(keys[1:], hr)
    clean = jax.random.uniform(keys[0], (hr.shape[0], 1, 1, 1)) < d.clean
    return jnp.where(clean, lr_clean, out)
