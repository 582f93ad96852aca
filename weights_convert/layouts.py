"""Source layouts -> canonical (official) names, as tables; wrappers and prefixes; config from shapes.

A table row is (source key pattern, canonical key template); a source key that matches no row, or a
canonical key that nothing fills, is reported — all of them together — never silently dropped.
"""
from __future__ import annotations

import re

import numpy as np

from reference.config import DIV2K_MEAN, RCANConfig
from reference.weights import mean_shift, official_shapes

WRAPPERS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net")
PREFIXES = ("module.", "netG.")

# Official RCAN (yulunzhang/RCAN; EDSR-PyTorch's rcan): canonical already.
OFFICIAL = [
    (r"(sub_mean|add_mean|head\.0)\.(weight|bias)", r"\1.\2"),
    (r"body\.(\d+)\.body\.(\d+)\.body\.([02])\.(weight|bias)", r"body.\1.body.\2.body.\3.\4"),
    (r"body\.(\d+)\.body\.(\d+)\.body\.3\.conv_du\.([02])\.(weight|bias)", r"body.\1.body.\2.body.3.conv_du.\3.\4"),
    (r"body\.(\d+)\.body\.(\d+)\.(weight|bias)", r"body.\1.body.\2.\3"),
    (r"body\.(\d+)\.(weight|bias)", r"body.\1.\2"),
    (r"tail\.0\.(\d+)\.(weight|bias)", r"tail.0.\1.\2"),
    (r"tail\.1\.(weight|bias)", r"tail.1.\1"),
]

# BasicSR (basicsr/archs/rcan_arch.py). The group's closing conv and the body conv get their official
# indices (B and G) once the config is known: written here as {B} and {G}.
BASICSR = [
    (r"conv_first\.(weight|bias)", r"head.0.\1"),
    (r"body\.(\d+)\.residual_group\.(\d+)\.rcab\.([02])\.(weight|bias)", r"body.\1.body.\2.body.\3.\4"),
    (r"body\.(\d+)\.residual_group\.(\d+)\.rcab\.3\.attention\.1\.(weight|bias)", r"body.\1.body.\2.body.3.conv_du.0.\3"),
    (r"body\.(\d+)\.residual_group\.(\d+)\.rcab\.3\.attention\.3\.(weight|bias)", r"body.\1.body.\2.body.3.conv_du.2.\3"),
    (r"body\.(\d+)\.conv\.(weight|bias)", r"body.\1.body.{B}.\2"),
    (r"conv_after_body\.(weight|bias)", r"body.{G}.\1"),
    (r"upsample\.(\d+)\.(weight|bias)", r"tail.0.\1.\2"),
    (r"conv_last\.(weight|bias)", r"tail.1.\1"),
]

LAYOUTS = {"official": OFFICIAL, "basicsr": BASICSR}


class LayoutError(ValueError):
    """Tensor names or shapes that fit no supported RCAN layout."""


def unwrap(obj) -> tuple[dict, str]:
    """The flat name -> tensor dict inside a checkpoint, and the path of wrappers taken to reach it."""
    path = []
    for _ in range(4):
        if not isinstance(obj, dict):
            raise LayoutError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
        if obj and all(isinstance(v, np.ndarray) for v in obj.values()):
            break
        key = next((k for k in WRAPPERS if isinstance(obj.get(k), dict)), None)
        if key is None:
            tensors = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
            if tensors:  # a state dict with a few non-tensor extras (e.g. an int step): keep the tensors
                obj = tensors
                break
            raise LayoutError(f"no state dict found (top-level keys: {sorted(map(str, obj))[:10]})")
        path.append(key)
        obj = obj[key]
    names = {}
    for k, v in obj.items():
        k = str(k)
        for p in PREFIXES:
            while k.startswith(p):
                k = k[len(p):]
        names[k] = v
    return names, "/".join(path) or "(bare)"


def detect_layout(names: dict) -> str:
    if "head.0.weight" in names:
        return "official"
    if "conv_first.weight" in names:
        return "basicsr"
    raise LayoutError("neither an official RCAN (head.0.weight) nor a BasicSR RCAN (conv_first.weight); "
                      f"first keys: {list(names)[:5]}")


def _count(names, pattern):
    found = {int(m.group(1)) for k in names if (m := re.fullmatch(pattern, k))}
    n = 0
    while n in found:
        n += 1
    return n


def infer_config(names: dict, layout: str) -> RCANConfig:
    """Groups, blocks, features, reduction, colours and scale from the tensor shapes alone."""
    if layout == "official":
        head, g_pat = "head.0.weight", r"body\.(\d+)\.body\.0\.body\.0\.weight"
        b_pat, du, up = r"body\.0\.body\.(\d+)\.body\.0\.weight", "body.0.body.0.body.3.conv_du.0.weight", "tail.0.{}.weight"
    else:
        head, g_pat = "conv_first.weight", r"body\.(\d+)\.residual_group\.0\.rcab\.0\.weight"
        b_pat = r"body\.0\.residual_group\.(\d+)\.rcab\.0\.weight"
        du, up = "body.0.residual_group.0.rcab.3.attention.1.weight", "upsample.{}.weight"
    problems = []
    for key in (head, du, up.format(0)):
        if key not in names:
            problems.append(f"missing {key}")
    if problems:
        raise LayoutError("cannot infer the config: " + "; ".join(problems))
    n_feats, n_colors = int(names[head].shape[0]), int(names[head].shape[1])
    squeeze = int(names[du].shape[0])
    steps = []
    i = 0
    while up.format(2 * i) in names:
        out = int(names[up.format(2 * i)].shape[0])
        r = int(round((out / n_feats) ** 0.5))
        if r * r * n_feats != out or r not in (2, 3):
            problems.append(f"{up.format(2 * i)} has {out} output channels: not 4 or 9 × {n_feats} features")
            r = None
        steps.append(r)
        i += 1
    scale = {(2,): 2, (3,): 3, (2, 2): 4, (2, 2, 2): 8}.get(tuple(steps))
    if scale is None:
        problems.append(f"upsampler steps {steps} fit no scale in 2, 3, 4, 8")
    if squeeze == 0 or n_feats % squeeze:
        problems.append(f"channel attention squeezes {n_feats} features to {squeeze}")
    if problems:
        raise LayoutError("not an RCAN: " + "; ".join(problems))
    try:
        return RCANConfig(scale=scale, n_resgroups=_count(names, g_pat), n_resblocks=_count(names, b_pat),
                          n_feats=n_feats, reduction=n_feats // squeeze, n_colors=n_colors,
                          rgb_mean=DIV2K_MEAN if n_colors == 3 else (0.5,) * n_colors)
    except ValueError as e:
        raise LayoutError(f"not an RCAN: {e}") from None


def to_canonical(names: dict, layout: str, config: RCANConfig, img_range: float = 255.0) -> dict[str, np.ndarray]:
    """Rename by the layout's table, check every shape, and report every problem at once."""
    table = [(re.compile(p), t.replace("{B}", str(config.n_resblocks)).replace("{G}", str(config.n_resgroups)))
             for p, t in LAYOUTS[layout]]
    expected = official_shapes(config)
    out, unmatched, problems = {}, [], []
    for key, value in names.items():
        for pattern, template in table:
            m = pattern.fullmatch(key)
            if m:
                target = m.expand(template)
                break
        else:
            unmatched.append(key)
            continue
        if target not in expected:
            problems.append(f"{key} -> {target}: not part of RCAN {config.to_json()}")
        elif tuple(value.shape) != expected[target]:
            problems.append(f"{key}: shape {tuple(value.shape)}, expected {expected[target]}")
        elif not np.issubdtype(value.dtype, np.floating):
            problems.append(f"{key}: dtype {value.dtype} is not floating point")
        elif target in out:
            problems.append(f"{key}: duplicate of {target}")
        else:
            out[target] = np.ascontiguousarray(value, dtype=np.float32)
    if layout == "basicsr":
        # BasicSR's mean shift is a fixed buffer outside the state dict, with input in [0, 1] scaled by
        # img_range: (x/255 - mean)·img_range. As official 1×1 convs on 0..255 input that is
        # sub_mean = (img_range/255)·I, -img_range·mean and add_mean = (255/img_range)·I, +255·mean.
        sub, add = mean_shift(config, -1, "sub_mean"), mean_shift(config, +1, "add_mean")
        out["sub_mean.weight"] = (sub["sub_mean.weight"] * (img_range / 255)).astype(np.float32)
        out["sub_mean.bias"] = (-img_range * np.asarray(config.rgb_mean)).astype(np.float32)
        out["add_mean.weight"] = (add["add_mean.weight"] * (255 / img_range)).astype(np.float32)
        out["add_mean.bias"] = add["add_mean.bias"]
    missing = [k for k in expected if k not in out]
    if unmatched:
        problems.append(f"{len(unmatched)} unexpected key(s): {', '.join(unmatched[:8])}")
    if missing:
        problems.append(f"{len(missing)} missing key(s): {', '.join(missing[:8])}")
    if problems:
        raise LayoutError(f"does not fit RCAN {config.to_json()}: " + "; ".join(problems))
    return {k: out[k] for k in expected}


def mean_drift(weights: dict, config: RCANConfig) -> dict:
    """How far sub_mean/add_mean moved from the ideal mean shift during training (informational)."""
    drift = {}
    for sign, name in ((-1, "sub_mean"), (1, "add_mean")):
        ideal = mean_shift(config, sign, name)
        drift[name] = {"weight_max_abs": float(np.abs(weights[f"{name}.weight"] - ideal[f"{name}.weight"]).max()),
                       "bias_max_abs": float(np.abs(weights[f"{name}.bias"] - ideal[f"{name}.bias"]).max())}
    return drift
