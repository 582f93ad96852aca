"""The explanation report's figures, drawn with matplotlib (the `report` extra).

Each function returns a matplotlib Figure (no pyplot state, so reports can be made from threads), whose
axes, labels and colour bars the tests read back; `png` renders one. Images are shown with nearest
interpolation, so every pixel of a crop is a visible block and panels of one figure share one zoom.
"""
from __future__ import annotations

import io

import numpy as np

try:
    from matplotlib.figure import Figure
except ImportError as e:   # the `report` extra
    raise SystemExit(f"error: the report's figures need {e.name}: pip install 'rcan-threeways[report]'") from None

from reference.metrics import rgb_to_y

DPI = 100
COLOURS = {"truth": "black", "bicubic": "tab:blue", "model": "tab:orange"}


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _show(ax, img, title: str):
    ax.imshow(img, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def self_check(sc: dict, scale: int) -> Figure:
    """The best and the worst window of the self-check: input (nearest) | bicubic | model | truth, then the
    absolute error on Y of the first three against the truth, on one colour scale; PSNR in each title."""
    imgs = sc["images"]
    rows = [(label, sc[key]) for key, label in (("best", "largest gain"), ("worst", "smallest gain")) if key in sc]
    shown = ("nearest", "bicubic", "model")
    fig = Figure(figsize=(15, 2.4 * len(rows) + 0.4))
    # Seven panels of one size (one zoom) per row, and a narrow eighth column for the error colour bar.
    grid = fig.subplots(len(rows), 8, squeeze=False, gridspec_kw={"width_ratios": [1] * 7 + [0.07]})
    errs = []
    for (label, box), ax in zip(rows, grid):
        y, x, n = box["y"], box["x"], box["size"]
        cut = lambda a: a[y:y + n, x:x + n]
        names = {"nearest": f"{label}\ninput (nearest ×{scale})", "bicubic": "bicubic", "model": "model"}
        for i, key in enumerate(shown):
            _show(ax[i], cut(imgs[key]), f"{names[key]} {box[f'{key}_psnr']:.2f} dB")
        _show(ax[3], cut(imgs["truth"]), "truth")
        truth_y = rgb_to_y(cut(imgs["truth"])).astype(np.float64)
        for i, key in enumerate(shown):
            errs.append((ax[4 + i], np.abs(rgb_to_y(cut(imgs[key])) - truth_y), f"|{key} − truth| on Y"))
    top = max(float(np.percentile(e, 99.5)) for _, e, _ in errs) or 1.0
    for ax, err, title in errs:
        im = ax.imshow(err, cmap="magma", vmin=0, vmax=top, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for cax in grid[:, 7]:
        fig.colorbar(im, cax=cax).set_label("absolute error (0..255)")
    fig.suptitle(f"Self-check crops ({box['size']}×{box['size']} output pixels, PSNR on Y per crop)")
    return fig


def spectrum(spec: dict, scale: int) -> Figure:
    """Radial power spectra of truth, bicubic and model, the input's Nyquist limit marked."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    f = np.asarray(spec["frequency"])
    for key in ("truth", "bicubic", "model"):
        ax.semilogy(f, np.maximum(spec["curves"][key], 1e-12), color=COLOURS[key], label=key, linewidth=1.6)
    ax.axvline(spec["nyquist"], color="gray", linestyle="--",
               label=f"input's Nyquist limit ({spec['nyquist']:.3f} = 0.5/{scale})")
    ax.axvspan(spec["nyquist"], 0.5, color="gray", alpha=0.08)
    ax.set_xlim(0, 0.5)
    ax.set_xlabel("spatial frequency (cycles per output pixel)")
    ax.set_ylabel("mean power per ring (luminance, log scale)")
    ax.set_title("Radial power spectrum of the self-check")
    ax.legend(fontsize=8)
    return fig


def attention(att: np.ndarray) -> Figure:
    """Every channel-attention gate of the traced run: one row per RCAB (groups × blocks), one column per
    channel, with a colour bar."""
    g, r, c = att.shape
    fig = Figure(figsize=(8, min(2.0 + 0.12 * g * r, 14)))
    ax = fig.subplots()
    im = ax.imshow(att.reshape(g * r, c), aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(np.arange(g) * r + (r - 1) / 2, [f"group {i + 1}" for i in range(g)])
    for i in range(1, g):
        ax.axhline(i * r - 0.5, color="white", linewidth=1.5)
    ax.set_xlabel("feature channel")
    ax.set_ylabel(f"residual group, then RCAB 1..{r} within it")
    ax.set_title("Channel attention gates on your image")
    fig.colorbar(im, ax=ax).set_label("gate (sigmoid output, 0..1)")
    return fig


def feature_maps(maps: list[dict]) -> Figure:
    """Feature maps (a residual group's output) of the most boosted and the most damped channel."""
    fig = Figure(figsize=(4.2 * len(maps), 4.0))
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    for ax, m in zip(axes, maps):
        im = ax.imshow(m["map"], cmap="RdBu_r", interpolation="nearest",
                       vmin=-np.abs(m["map"]).max(), vmax=np.abs(m["map"]).max())
        ax.set_title(f"{m['label']}: group {m['group'] + 1}, channel {m['channel']}\n(mean gate {m['gate']:.2f})",
                     fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8).set_label("activation")
    return fig
