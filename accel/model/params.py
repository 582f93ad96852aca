"""Official weights <-> nnx state: the one place with the key table, the transposes and the stacking.

Official kernels are [out, in, kh, kw] (PyTorch); nnx.Conv wants [kh, kw, in, out] (HWIO) and
nnx.Linear [in, out]. Stacked loops (nnx.scan) put the group and/or block index on a leading axis.
"""
from __future__ import annotations

import numpy as np

from reference.config import RCANConfig


def _conv_in(w):      # OIHW -> HWIO
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _linear_in(w):    # [out, in, 1, 1] -> [in, out]
    return np.ascontiguousarray(w[:, :, 0, 0].T)


def _conv_out(k):
    return np.ascontiguousarray(np.asarray(k).transpose(3, 2, 0, 1))


def _linear_out(k):
    return np.ascontiguousarray(np.asarray(k).T[:, :, None, None])


def _entries(config: RCANConfig):
    """(official prefix, nnx path, kind) for every conv; group/block indices in the path."""
    G, B = config.n_resgroups, config.n_resblocks
    yield "sub_mean", ("sub_mean",), "conv"
    yield "add_mean", ("add_mean",), "conv"
    yield "head.0", ("head",), "conv"
    for g in range(G):
        for b in range(B):
            p = f"body.{g}.body.{b}.body"
            yield f"{p}.0", ("groups", g, "blocks", b, "conv1"), "conv"
            yield f"{p}.2", ("groups", g, "blocks", b, "conv2"), "conv"
            yield f"{p}.3.conv_du.0", ("groups", g, "blocks", b, "attention", "down"), "linear"
            yield f"{p}.3.conv_du.2", ("groups", g, "blocks", b, "attention", "up"), "linear"
        yield f"body.{g}.body.{B}", ("groups", g, "conv"), "conv"
    yield f"body.{G}", ("body_conv",), "conv"
    for i in range(len(config.upsample_steps)):
        yield f"tail.0.{2 * i}", ("upsampler", i), "conv"
    yield "tail.1", ("tail",), "conv"


def _set(tree, path, value):
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def to_pure_dict(weights: dict[str, np.ndarray], config: RCANConfig, loops) -> dict:
    """Official weights -> the nested dict of arrays of an nnx RCAN with these loops."""
    tree: dict = {}
    for prefix, path, kind in _entries(config):
        w, b = weights[prefix + ".weight"], weights[prefix + ".bias"]
        _set(tree, path + ("kernel",), _conv_in(w) if kind == "conv" else _linear_in(w))
        _set(tree, path + ("bias",), np.asarray(b))
    if loops.scan_blocks:   # groups[g].blocks[b] -> groups[g].blocks with a leading B axis
        for g in tree["groups"].values():
            g["blocks"] = _stack_dict(g["blocks"])
    if loops.scan_groups:   # groups[g] -> groups with a leading G axis
        tree["groups"] = _stack_dict(tree["groups"])
    return tree


def _stack_dict(indexed: dict) -> dict:
    items = [indexed[i] for i in sorted(indexed)]

    def stack(nodes):
        if isinstance(nodes[0], dict):
            return {k: stack([n[k] for n in nodes]) for k in nodes[0]}
        return np.stack(nodes)
    return stack(items)


def from_pure_dict(tree: dict, config: RCANConfig, loops) -> dict[str, np.ndarray]:
    """The nested arrays of an nnx RCAN (any loops) -> official weights (float32, official order)."""
    weights = {}
    for prefix, path, kind in _entries(config):
        node = tree
        for i, key in enumerate(path):
            # Stacked loops have no index level: index the leading axis of the arrays instead.
            if isinstance(key, int) and not (key in node if isinstance(node, dict) else False):
                node = _index(node, key)
            else:
                node = node[key]
        k, b = np.asarray(node["kernel"], np.float32), np.asarray(node["bias"], np.float32)
        weights[prefix + ".weight"] = _conv_out(k) if kind == "conv" else _linear_out(k)
        weights[prefix + ".bias"] = np.ascontiguousarray(b)
    return weights


def _index(node, i):
    if isinstance(node, dict):
        return {k: _index(v, i) for k, v in node.items()}
    return node[i]
