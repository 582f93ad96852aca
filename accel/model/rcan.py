"""RCAN in JAX + flax.nnx, mirroring reference/rcan.py name for name (NHWC activations, HWIO kernels).

Blocks can be unrolled Python loops or stacked and scanned, separately for the RCABs of a group and for
the groups of the body (`Loops`; with both scanned, the loops read each RCAB's weights in place). The
stacking of weights for each kind of loops lives in accel/model/params.py, the one place that maps official
keys to nnx paths.

An optional mask [N, H, W, 1] (1 = image, 0 = padding) makes a zero-padded batch compute exactly what
each image alone would: every conv's output is re-zeroed outside the image (as the official zero
padding sees it) and channel attention pools only over the image.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from accel.conv import registry, winograd
from reference.config import RCANConfig


@dataclasses.dataclass(frozen=True)
class Loops:
    """How the repeated blocks run: Python-unrolled (fast on CPU, slow to compile) or nnx.scan."""
    scan_blocks: bool = False
    scan_groups: bool = True


LOOPS = {"unrolled": Loops(False, False), "scan": Loops(True, True), "mixed": Loops(False, True)}


class Conv(nnx.Conv):
    """nnx.Conv ('SAME', stride 1) whose 3×3 convolutions run as Winograd (or one of the C++ kernels) when the
    forward is traced under registry.enabled() and registry.applies() to them (accel/conv/registry.py, the path
    chosen by accel/conv/autotune.py)."""

    def __call__(self, inputs, pooled: bool = False):
        """pooled: return (output, its mean over H and W in float32), which the C++ Winograd kernels take as
        they write the output (channel attention's pooling without another pass over it)."""
        plain = self.padding == "SAME" and self.strides in (1, (1, 1)) and self.kernel_dilation in (1, (1, 1))
        if plain and self.feature_group_count == 1 and registry.applies(self.kernel.shape):
            bias = self.bias[...] if self.bias is not None else None
            x, kernel, bias = self.promote_dtype((inputs, self.kernel[...], bias), dtype=self.dtype)
            return registry.square_conv(x, kernel, bias, pooled)
        return winograd.with_pooling(super().__call__(inputs), pooled)


def conv(cin, cout, k, dtype, rngs):
    return Conv(cin, cout, (k, k), padding="SAME", dtype=dtype, rngs=rngs)


def masked(x, mask):
    return x if mask is None else x * mask.astype(x.dtype)


class ChannelAttention(nnx.Module):
    """§3.3: global average pool -> 1×1 conv C -> C/r -> ReLU -> 1×1 conv C/r -> C -> sigmoid -> scale."""

    def __init__(self, n_feats, squeeze, dtype, *, rngs):
        self.down = nnx.Linear(n_feats, squeeze, dtype=dtype, rngs=rngs)   # conv_du.0
        self.up = nnx.Linear(squeeze, n_feats, dtype=dtype, rngs=rngs)     # conv_du.2

    def gates(self, x, mask=None, pooled=None):
        """pooled: x's global average pool [N, C] (float32) where the caller has it already."""
        if pooled is not None:
            z = pooled
        elif mask is None:
            z = jnp.mean(x.astype(jnp.float32), axis=(1, 2))                  # [N, C]
        else:
            z = jnp.sum(x.astype(jnp.float32), axis=(1, 2)) / jnp.sum(mask, axis=(1, 2))
        return jax.nn.sigmoid(self.up(jax.nn.relu(self.down(z.astype(x.dtype)))))  # [N, C]

    def __call__(self, x, mask=None, pooled=None):
        return x * self.gates(x, mask, pooled)[:, None, None, :]


class RCAB(nnx.Module):
    """§3.4: x + CA(conv(ReLU(conv(x))))."""

    def __init__(self, config: RCANConfig, dtype, *, rngs):
        C = config.n_feats
        self.conv1 = conv(C, C, 3, dtype, rngs)                               # body.0
        self.conv2 = conv(C, C, 3, dtype, rngs)                               # body.2
        self.attention = ChannelAttention(C, config.squeeze, dtype, rngs=rngs)  # body.3

    def __call__(self, x, mask=None):
        r = jax.nn.relu(masked(self.conv1(x), mask))
        if mask is None:   # the attention's pooling taken with conv2's output (as the Winograd kernels write it)
            r, pooled = self.conv2(r, pooled=True)
            return x + self.attention(r, pooled=pooled)
        r = masked(self.conv2(r), mask)
        return x + self.attention(r, mask)


def _stacked(make, n, rngs):
    """n copies of a module with every parameter stacked on a leading axis (for nnx.scan)."""
    @nnx.split_rngs(splits=n)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def create(rngs):
        return make(rngs)
    return create(rngs)


def _run(blocks, x, mask, scan: bool):
    if scan:
        step = nnx.scan(lambda h, block: block(h, mask), in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
        return step(x, blocks)
    for block in blocks:
        x = block(x, mask)
    return x


def _run_groups_in_place(groups, x, mask):
    """The scanned loops's body, G groups of B RCABs, as two loops that read each RCAB's weights straight
    from the stacked [G, B, ...] parameters. (Nested nnx.scans hand the inner scan its group's [B, ...]
    slice, which XLA copies for every group: 2 × 2.9 MB of the official model's 16 MB of temporaries
    at 64×64; here each step slices one RCAB, 0.3 MB.)"""
    block_def, block_state = nnx.split(groups.blocks)
    conv_def, conv_state = nnx.split(groups.conv)
    n_groups, n_blocks = jax.tree.leaves(block_state)[0].shape[:2]

    def group(x, g):
        def block(h, i):
            rcab = nnx.merge(block_def, jax.tree.map(lambda a: a[g, i], block_state))
            return rcab(h, mask), None
        r = jax.lax.scan(block, x, jnp.arange(n_blocks))[0]
        closing = nnx.merge(conv_def, jax.tree.map(lambda a: a[g], conv_state))
        return x + masked(closing(r), mask), None                            # short skip
    return jax.lax.scan(group, x, jnp.arange(n_groups))[0]


class ResidualGroup(nnx.Module):
    """§3.2: B RCABs, a closing conv, and the short skip."""

    def __init__(self, config: RCANConfig, loops: Loops, dtype, *, rngs):
        self.scan_blocks = loops.scan_blocks
        make = lambda r: RCAB(config, dtype, rngs=r)
        if loops.scan_blocks:
            self.blocks = _stacked(make, config.n_resblocks, rngs)
        else:
            self.blocks = nnx.List([make(rngs) for _ in range(config.n_resblocks)])
        self.conv = conv(config.n_feats, config.n_feats, 3, dtype, rngs)  # body.{B}

    def __call__(self, x, mask=None):
        r = _run(self.blocks, x, mask, self.scan_blocks)
        return x + masked(self.conv(r), mask)                                 # short skip


class RCAN(nnx.Module):
    """sub_mean -> head -> residual in residual (G groups, conv, long skip) -> upsampler -> tail -> add_mean."""

    def __init__(self, config: RCANConfig, loops: Loops = LOOPS["unrolled"], dtype=jnp.float32, *, rngs,
                 conv_path: str = "auto"):
        # conv_path: how accel.forward runs the CPU convolutions (accel/conv/autotune.py); no effect on the maths.
        self.config, self.loops, self.dtype, self.conv_path = config, loops, dtype, conv_path
        C, c = config.n_feats, config.n_colors
        self.sub_mean = conv(c, c, 1, jnp.float32, rngs)
        self.head = conv(c, C, 3, dtype, rngs)
        make = lambda r: ResidualGroup(config, loops, dtype, rngs=r)
        if loops.scan_groups:
            self.groups = _stacked(make, config.n_resgroups, rngs)
        else:
            self.groups = nnx.List([make(rngs) for _ in range(config.n_resgroups)])
        self.body_conv = conv(C, C, 3, dtype, rngs)
        self.upsampler = nnx.List([conv(C, r * r * C, 3, dtype, rngs) for r in config.upsample_steps])
        self.tail = conv(C, c, 3, dtype, rngs)
        self.add_mean = conv(c, c, 1, jnp.float32, rngs)

    def __call__(self, lr, mask=None):
        """lr [N, H, W, 3] in [0, rgb_range] -> [N, sH, sW, 3] float32, unclamped."""
        # Mask after the mean shift too: the head conv's zero padding sees zeros, not -mean.
        x = masked(self.sub_mean(lr.astype(jnp.float32)), mask).astype(self.dtype)
        x = masked(self.head(x), mask)                                        # [N, H, W, C]
        if self.loops.scan_groups and self.loops.scan_blocks:
            r = _run_groups_in_place(self.groups, x, mask)
        else:
            r = _run(self.groups, x, mask, self.loops.scan_groups)
        r = x + masked(self.body_conv(r), mask)                               # long skip
        for conv_, s in zip(self.upsampler, self.config.upsample_steps):
            r = pixel_shuffle(conv_(r), s)                                    # [N, sH, sW, C]
            if mask is not None:
                mask = jnp.repeat(jnp.repeat(mask, s, axis=1), s, axis=2)
                r = masked(r, mask)
        return self.add_mean(self.tail(r).astype(jnp.float32))


def pixel_shuffle(x, r: int):
    """PyTorch's channel order: channel c·r² + i·r + j -> pixel (y·r + i, x·r + j), channel c."""
    N, H, W, Crr = x.shape
    C = Crr // (r * r)
    x = x.reshape(N, H, W, C, r, r)
    return x.transpose(0, 1, 4, 2, 5, 3).reshape(N, H * r, W * r, C)
