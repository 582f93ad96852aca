"""RCAN in plain NumPy: the ground truth of this project, written to be read next to the paper.

Zhang, Li, Li, Wang, Zhong, Fu. "Image Super-Resolution Using Very Deep Residual Channel Attention
Networks", ECCV 2018 (arXiv 1807.02758). Code: github.com/yulunzhang/RCAN.

Order of the paper: primitives (conv2d, pixel_shuffle, mean_shift) -> channel attention (§3.3) ->
residual channel attention block, RCAB (§3.4) -> residual group with its short skip (§3.2) ->
residual in residual body with the long skip -> upsampler and tail (§3.1) -> forward.

Every function takes the official weights dict (official key names, kernels [out, in, kh, kw]) and an
image in HWC layout. Images are float32 RGB in [0, rgb_range] (0..255), as in the official code.
"""
from __future__ import annotations

import time

import numpy as np

from .config import RCANConfig

# ---------------------------------------------------------------------------------------------------
# Primitives


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """'Same' 2-D convolution (zero padding k//2, stride 1) as one BLAS matmul (im2col).

    x [H, W, Cin], weight [Cout, Cin, k, k] (PyTorch layout), bias [Cout] -> [H, W, Cout].
    """
    H, W, Cin = x.shape
    Cout, _, k, _ = weight.shape
    if k == 1:
        return (x.reshape(H * W, Cin) @ weight[:, :, 0, 0].T + bias).reshape(H, W, Cout)
    p = k // 2
    xp = np.pad(x, ((p, p), (p, p), (0, 0)))                               # [H+2p, W+2p, Cin]
    # cols[y, x, i, j, c] = xp[y + i, x + j, c]: one strided view, one copy into the matmul operand.
    s = xp.strides
    cols = np.lib.stride_tricks.as_strided(xp, (H, W, k, k, Cin), (s[0], s[1], s[0], s[1], s[2]))
    w = weight.transpose(2, 3, 1, 0).reshape(k * k * Cin, Cout)             # [(i, j, cin), Cout]
    out = cols.reshape(H * W, k * k * Cin) @ w + bias                       # [H*W, Cout]
    return out.reshape(H, W, Cout)


def _conv(weights, name, x):
    return conv2d(x, weights[name + ".weight"], weights[name + ".bias"])


def conv2d_naive(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The same convolution written as the definition, loop by loop (slow; for tests and reading)."""
    H, W, Cin = x.shape
    Cout, _, k, _ = weight.shape
    p = k // 2
    out = np.zeros((H, W, Cout), dtype=np.float64)
    for o in range(Cout):
        for y in range(H):
            for xx in range(W):
                acc = float(bias[o])
                for c in range(Cin):
                    for i in range(k):
                        for j in range(k):
                            yy, xj = y + i - p, xx + j - p
                            if 0 <= yy < H and 0 <= xj < W:
                                acc += float(x[yy, xj, c]) * float(weight[o, c, i, j])
                out[y, xx, o] = acc
    return out.astype(np.float32)


def pixel_shuffle(x: np.ndarray, r: int) -> np.ndarray:
    """Sub-pixel upsampling (Shi et al. 2016) in PyTorch's channel order.

    Input channel c·r² + i·r + j goes to output pixel (y·r + i, x·r + j), channel c.
    """
    H, W, Crr = x.shape
    C = Crr // (r * r)
    x = x.reshape(H, W, C, r, r)                                            # [H, W, C, i, j]
    return x.transpose(0, 3, 1, 4, 2).reshape(H * r, W * r, C)              # [H·r, W·r, C]


def mean_shift(weights, name: str, x: np.ndarray) -> np.ndarray:
    """sub_mean / add_mean: the checkpoint's own 1×1 convs (never frozen in official training)."""
    return _conv(weights, name, x)


def relu(x):
    return np.maximum(x, 0)


def sigmoid(x):
    # Split by sign so that exp never overflows.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


# ---------------------------------------------------------------------------------------------------
# Channel attention (§3.3): global average pooling -> 1×1 conv down (C -> C/r) -> ReLU ->
# 1×1 conv up (C/r -> C) -> sigmoid -> rescale each channel.


def channel_attention_gates(weights, prefix: str, x: np.ndarray) -> np.ndarray:
    """The per-channel gates s = f(W_U δ(W_D z)), z the channel means of x. [H, W, C] -> [C]."""
    z = x.mean(axis=(0, 1), dtype=np.float32)[None, None]                   # [1, 1, C]
    s = relu(_conv(weights, prefix + ".conv_du.0", z))                      # [1, 1, C/r]
    return sigmoid(_conv(weights, prefix + ".conv_du.2", s))[0, 0]          # [C]


def channel_attention(weights, prefix: str, x: np.ndarray, trace=None) -> np.ndarray:
    s = channel_attention_gates(weights, prefix, x)
    if trace is not None:
        trace.setdefault("attention", []).append(s)
    return x * s


# ---------------------------------------------------------------------------------------------------
# Residual channel attention block (§3.4): F = x + CA(conv(ReLU(conv(x)))).


def rcab(weights, prefix: str, x: np.ndarray, trace=None) -> np.ndarray:
    r = _conv(weights, prefix + ".body.0", x)
    r = _conv(weights, prefix + ".body.2", relu(r))
    return x + channel_attention(weights, prefix + ".body.3", r, trace)


# ---------------------------------------------------------------------------------------------------
# Residual group (§3.2): B RCABs, a closing conv, and the short skip connection.


def residual_group(weights, g: int, config: RCANConfig, x: np.ndarray, trace=None) -> np.ndarray:
    r = x
    for b in range(config.n_resblocks):
        r = rcab(weights, f"body.{g}.body.{b}", r, trace)
    r = _conv(weights, f"body.{g}.body.{config.n_resblocks}", r)
    return x + r                                                            # short skip


# ---------------------------------------------------------------------------------------------------
# Residual in residual (§3.2): G residual groups, a closing conv, and the long skip.


def residual_in_residual(weights, config: RCANConfig, x: np.ndarray, trace=None) -> np.ndarray:
    r = x
    for g in range(config.n_resgroups):
        r = residual_group(weights, g, config, r, trace)
        if trace is not None:
            trace[f"group_{g}"] = r
    r = _conv(weights, f"body.{config.n_resgroups}", r)
    return x + r                                                            # long skip


# ---------------------------------------------------------------------------------------------------
# Upsampler (§3.1): conv to r²·C channels, then pixel shuffle by r; ×4 and ×8 repeat the ×2 step.


def upsampler(weights, config: RCANConfig, x: np.ndarray) -> np.ndarray:
    for i, r in enumerate(config.upsample_steps):
        x = pixel_shuffle(_conv(weights, f"tail.0.{2 * i}", x), r)          # [H, W, C] -> [rH, rW, C]
    return x


# ---------------------------------------------------------------------------------------------------
# The network: sub_mean -> head -> RIR body + long skip -> upsampler -> tail conv -> add_mean.


def forward(weights: dict, config: RCANConfig, lr: np.ndarray, trace: dict | None = None) -> np.ndarray:
    """Super-resolve one image: lr float32 [H, W, 3] in [0, rgb_range] -> [scale·H, scale·W, 3], unclamped.

    trace: pass a dict to receive every stage: 'input', 'head', 'group_{g}', 'body', 'upsampler',
    'output' activations, 'attention', the channel-attention gates [groups, blocks, n_feats], and
    'seconds', the time spent in each stage.
    """
    lr = np.asarray(lr, dtype=np.float32)
    if lr.ndim != 3 or lr.shape[2] != config.n_colors:
        raise ValueError(f"lr must be [H, W, {config.n_colors}], got shape {lr.shape}")
    clock = _Clock(trace)
    x = mean_shift(weights, "sub_mean", lr)
    clock("sub_mean")
    x = _conv(weights, "head.0", x)                                         # [H, W, C]
    clock("head")
    if trace is not None:
        trace["input"] = lr
        trace["head"] = x
        trace["attention"] = []
    x = residual_in_residual(weights, config, x, trace)
    clock("body")
    if trace is not None:
        trace["body"] = x
    x = upsampler(weights, config, x)                                       # [sH, sW, C]
    clock("upsampler")
    if trace is not None:
        trace["upsampler"] = x
    x = _conv(weights, "tail.1", x)                                         # [sH, sW, 3]
    clock("tail")
    sr = mean_shift(weights, "add_mean", x)
    clock("add_mean")
    if trace is not None:
        G, B = config.n_resgroups, config.n_resblocks
        trace["attention"] = np.stack(trace["attention"]).reshape(G, B, config.n_feats)
        trace["output"] = sr
    return sr


class _Clock:
    """Seconds spent in each stage, into trace['seconds'] (only when tracing)."""

    def __init__(self, trace):
        self.trace, self.t = trace, time.perf_counter()
        if trace is not None:
            trace["seconds"] = {}

    def __call__(self, stage):
        if self.trace is not None:
            now = time.perf_counter()
            self.trace["seconds"][stage] = now - self.t
            self.t = now
