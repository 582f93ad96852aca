"""The canonical weights file: the official RCAN state dict, verbatim, in safetensors.

Official key names and layout (conv kernels [out, in, kh, kw]), float32. The metadata carries the
format version, the RCANConfig as JSON and where the weights came from. Loading is strict: the
official loader was not, and wrong hyper-parameters then loaded silently into colour-shifted output.
"""
from __future__ import annotations

import json
import os

import numpy as np
from safetensors.numpy import save_file

from .config import RCANConfig
from .support.files import atomic_write

FORMAT = "rcan-canonical/1"


class WeightsError(ValueError):
    """A weights file that does not hold an RCAN of the expected shape."""


def official_shapes(config: RCANConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the official module tree, in state_dict order, with its shape."""
    C, c, k = config.n_feats, config.n_colors, 3
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name, cin, cout, ksize):
        shapes[f"{name}.weight"] = (cout, cin, ksize, ksize)
        shapes[f"{name}.bias"] = (cout,)

    conv("sub_mean", c, c, 1)
    conv("add_mean", c, c, 1)
    conv("head.0", c, C, k)
    for g in range(config.n_resgroups):
        for b in range(config.n_resblocks):
            block = f"body.{g}.body.{b}.body"
            conv(f"{block}.0", C, C, k)                      # index 1 is the ReLU
            conv(f"{block}.2", C, C, k)
            conv(f"{block}.3.conv_du.0", C, config.squeeze, 1)
            conv(f"{block}.3.conv_du.2", config.squeeze, C, 1)
        conv(f"body.{g}.body.{config.n_resblocks}", C, C, k)  # the group's closing conv
    conv(f"body.{config.n_resgroups}", C, C, k)               # the body's closing conv
    for i, r in enumerate(config.upsample_steps):
        conv(f"tail.0.{2 * i}", C, r * r * C, k)              # odd indices are PixelShuffle
    conv("tail.1", C, c, k)
    return shapes


def stages(config: RCANConfig, h: int, w: int) -> list[dict]:
    """Each stage of the workflow with its output shape, parameter count and multiply-adds."""
    C, c, G, B, k2 = config.n_feats, config.n_colors, config.n_resgroups, config.n_resblocks, 9

    def conv(cin, cout, kk, px):
        return cin * cout * kk + cout, cin * cout * kk * px

    px = h * w
    rows = []
    p, m = conv(c, c, 1, px)
    rows.append(dict(stage="mean shift (sub_mean)", shape=(h, w, c), params=p, macs=m))
    p, m = conv(c, C, k2, px)
    rows.append(dict(stage="head conv 3×3", shape=(h, w, C), params=p, macs=m))
    s = config.squeeze
    rcab_p = 2 * conv(C, C, k2, px)[0] + conv(C, s, 1, 1)[0] + conv(s, C, 1, 1)[0]
    rcab_m = 2 * conv(C, C, k2, px)[1] + C * s + s * C
    gp, gm = conv(C, C, k2, px)
    rows.append(dict(stage=f"residual in residual: {G} groups × {B} RCABs (channel attention), short skips",
                     shape=(h, w, C), params=G * (B * rcab_p + gp), macs=G * (B * rcab_m + gm)))
    p, m = conv(C, C, k2, px)
    rows.append(dict(stage="body conv 3×3 + long skip", shape=(h, w, C), params=p, macs=m))
    hh, ww, up_p, up_m = h, w, 0, 0
    for r in config.upsample_steps:
        p, m = conv(C, r * r * C, k2, hh * ww)
        up_p, up_m, hh, ww = up_p + p, up_m + m, hh * r, ww * r
    rows.append(dict(stage=f"upsampler: conv + pixel shuffle ×{config.scale}", shape=(hh, ww, C), params=up_p,
                     macs=up_m))
    p, m = conv(C, c, k2, hh * ww)
    rows.append(dict(stage="tail conv 3×3", shape=(hh, ww, c), params=p, macs=m))
    p, m = conv(c, c, 1, hh * ww)
    rows.append(dict(stage="mean shift (add_mean)", shape=(hh, ww, c), params=p, macs=m))
    total = sum(r["macs"] for r in rows)
    for r in rows:
        r["share"] = r["macs"] / total
    return rows


def check_weights(weights: dict[str, np.ndarray], config: RCANConfig, source: str = "weights") -> None:
    """Raise one WeightsError listing every missing, unexpected, mis-shaped or non-float32 tensor, or
    naming the tensors with NaN or infinite values (they give a black image, not an error, downstream)."""
    if tensor_count(config) > len(weights) + 1000:   # before listing a declared config's names: it may be huge
        raise WeightsError(f"{source} holds {len(weights)} tensors; RCAN {config_summary(config)} has "
                           f"{tensor_count(config)}")
    expected = official_shapes(config)
    missing = [k for k in expected if k not in weights]
    unexpected = sorted(k for k in weights if k not in expected)
    shaped = [f"{k}: {tuple(weights[k].shape)} != {expected[k]}" for k in expected
              if k in weights and tuple(weights[k].shape) != expected[k]]
    typed = [f"{k}: {weights[k].dtype}" for k in expected if k in weights and weights[k].dtype != np.float32]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shaped),
                         ("not float32", typed)):
        if items:
            shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
            problems.append(f"{len(items)} {label}: {shown}")
    if problems:
        raise WeightsError(f"{source} does not match RCAN {config_summary(config)}: " + "; ".join(problems))
    broken = [k for k in expected if not np.isfinite(weights[k]).all()]
    if broken:
        raise WeightsError(f"{source}: {len(broken)} tensors hold NaN or infinite values: {', '.join(broken[:4])}")


def config_summary(config: RCANConfig) -> str:
    return f"x{config.scale} G{config.n_resgroups}R{config.n_resblocks}F{config.n_feats}r{config.reduction}"


def init_weights(config: RCANConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights with the official names.

    PyTorch's default conv init (uniform ±1/sqrt(fan_in)) for every conv, except the second conv of
    each RCAB, scaled by 0.1: with 200 residual blocks in the long chain an unscaled init grows the
    activations by orders of magnitude; scaled like this the full official network outputs values in
    image range. sub_mean/add_mean get the ideal mean shift (identity, ∓rgb_range·mean).
    """
    rng = np.random.default_rng(seed)
    shapes = official_shapes(config)
    weights = {}
    for name, shape in shapes.items():
        if name.startswith(("sub_mean", "add_mean")):
            continue
        fan_in = int(np.prod(shape[1:])) if name.endswith("weight") else None
        if fan_in is None:  # bias: same bound as its weight
            wshape = shapes[name[:-4] + "weight"]
            fan_in = int(np.prod(wshape[1:]))
        bound = 1.0 / np.sqrt(fan_in)
        if ".body.2." in name and name.count("body") == 3:
            bound *= 0.1
        weights[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    weights.update(mean_shift(config, sign=-1, prefix="sub_mean"))
    weights.update(mean_shift(config, sign=+1, prefix="add_mean"))
    return {k: weights[k] for k in shapes}


def mean_shift(config: RCANConfig, sign: int, prefix: str) -> dict[str, np.ndarray]:
    """The ideal MeanShift 1×1 conv of the official code (rgb_std = 1)."""
    c = config.n_colors
    return {f"{prefix}.weight": np.eye(c, dtype=np.float32).reshape(c, c, 1, 1),
            f"{prefix}.bias": (sign * config.rgb_range * np.asarray(config.rgb_mean)).astype(np.float32)}


def save_weights(path, weights: dict[str, np.ndarray], config: RCANConfig, **provenance) -> None:
    """Write the canonical file atomically (temporary file in the same folder, then rename)."""
    check_weights(weights, config)
    metadata = {"format": FORMAT, "config": config.to_json()}
    metadata.update({k: str(v) for k, v in provenance.items()})
    tensors = {k: np.ascontiguousarray(weights[k]) for k in official_shapes(config)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


MAX_HEADER = 100 << 20     # bytes of safetensors JSON header we are willing to parse
DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "BF16": "bfloat16", "I64": np.int64,
          "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _header(path) -> tuple[dict, int, int]:
    """The safetensors header (a JSON object), its end offset and the file size, checked before use."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n <= 0 or n > min(size - 8, MAX_HEADER):
                raise WeightsError(f"{path}: not a safetensors file (bad header size)")
            header = json.loads(f.read(n))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise WeightsError(f"{path}: not a safetensors file ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: not a safetensors file (header is a JSON {type(header).__name__}, not an object)")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise WeightsError(f"{path}: safetensors metadata must map strings to strings")
    return header, 8 + n, size


def read_metadata(path) -> dict[str, str]:
    return dict(_header(path)[0].get("__metadata__", {}))


def read_safetensors(path, expect: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) of a safetensors file, each tensor a read-only view of a memory map, checked
    against the file (dtype, shape, offsets inside the data, no overlap) before any is made. bfloat16 is
    widened to float32 (exact). expect: the tensor count the caller needs; a file with far fewer is
    refused before anything else is read (so a header that declares a huge model costs nothing)."""
    path = os.fspath(path)
    header, start, size = _header(path)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    if expect is not None and expect > len(entries) + 1000:
        raise WeightsError(f"{path}: holds {len(entries)} tensors, the declared model has {expect}")
    spans = []
    for name, e in entries.items():
        ok = (isinstance(e, dict) and e.get("dtype") in DTYPES and isinstance(e.get("shape"), list)
              and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in e["shape"])
              and isinstance(e.get("data_offsets"), list) and len(e["data_offsets"]) == 2
              and all(isinstance(o, int) and not isinstance(o, bool) for o in e["data_offsets"]))
        if not ok:
            raise WeightsError(f"{path}: bad safetensors entry for {name!r}")
        begin, end = e["data_offsets"]
        item = 2 if e["dtype"] == "BF16" else np.dtype(DTYPES[e["dtype"]]).itemsize
        if not 0 <= begin <= end <= size - start or end - begin != int(np.prod(e["shape"], dtype=object)) * item:
            raise WeightsError(f"{path}: tensor {name!r} does not fit the file (offsets {begin}..{end})")
        spans.append((begin, end))
    spans.sort()
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
        raise WeightsError(f"{path}: tensors overlap in the file")
    buf = np.memmap(path, np.uint8, "r") if size > start else np.zeros(0, np.uint8)
    tensors = {}
    for name, e in entries.items():
        begin, end = e["data_offsets"]
        raw = buf[start + begin:start + end]
        if e["dtype"] == "BF16":
            tensors[name] = widen_bfloat16(raw).reshape(e["shape"])
        else:
            tensors[name] = raw.view(np.dtype(DTYPES[e["dtype"]]).newbyteorder("<")).reshape(e["shape"])
    return tensors, dict(header.get("__metadata__", {}))


def widen_bfloat16(raw: np.ndarray) -> np.ndarray:
    """Little-endian bfloat16 bytes as float32, exactly (bfloat16 is the top half of a float32)."""
    return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)


def tensor_count(config: RCANConfig) -> int:
    """How many tensors the official module tree has (without listing them: configs can be huge)."""
    convs = 2 + 1 + config.n_resgroups * (4 * config.n_resblocks + 1) + 1 + len(config.upsample_steps) + 1
    return 2 * convs


def load_weights(path) -> tuple[dict[str, np.ndarray], RCANConfig]:
    """Read a canonical file: (weights in official names and layout, config). Strict."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such weights file")
    metadata = read_metadata(path)
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise WeightsError(f"{path}: not a canonical RCAN file (metadata format={metadata.get('format')!r}); "
                           f"convert it first: python -m weights_convert {path} -o out.safetensors")
    try:
        config = RCANConfig.from_json(metadata["config"])
    except (ValueError, TypeError) as e:
        raise WeightsError(f"{path}: bad config in metadata: {e}") from None
    weights, _ = read_safetensors(path, expect=tensor_count(config))
    check_weights(weights, config, source=path)
    return weights, config
