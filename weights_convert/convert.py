"""load_checkpoint: any supported source -> (canonical weights, config), plus what was found."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile

from safetensors import SafetensorError

from reference.config import RCANConfig
from reference.weights import (
    FORMAT,
    WeightsError,
    check_weights,
    config_summary,
    read_safetensors,
    save_weights,
    tensor_count,
)

from .layouts import (
    LayoutError,
    detect_layout,
    infer_config,
    mean_drift,
    to_canonical,
    unwrap,
)
from .safe_pickle import UnsafePickleError
from .torch_file import CheckpointError, read_checkpoint


class ConvertError(ValueError):
    """The converter's one error type: the message is what to tell the user."""


@dataclasses.dataclass
class Converted:
    weights: dict
    config: RCANConfig
    layout: str
    container: str       # zip | legacy | safetensors
    wrapper: str
    source_name: str


def _read_source(path: str):
    if path.endswith(".safetensors"):
        try:
            tensors, meta = read_safetensors(path)
        except (WeightsError, OSError, ValueError) as e:
            raise ConvertError(f"unreadable safetensors file: {e}") from None
        return tensors, "safetensors", meta
    container = "zip" if zipfile.is_zipfile(path) else "legacy"
    return read_checkpoint(path), container, {}


def convert(path, img_range: float = 255.0) -> Converted:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConvertError("no such file")
    try:
        obj, container, meta = _read_source(path)
        names, wrapper = unwrap(obj)
        layout = detect_layout(names)
        config = infer_config(names, layout)
        if meta.get("format") == FORMAT and "config" in meta:
            try:
                stated = RCANConfig.from_json(meta["config"])
            except (ValueError, TypeError) as e:
                raise ConvertError(f"bad config in the file's metadata: {e}") from None
            if tensor_count(stated) != len(names):   # checked before listing a (maybe huge) declared model
                raise ConvertError(f"the metadata declares RCAN {config_summary(stated)} "
                                   f"({tensor_count(stated)} tensors); the file holds {len(names)}")
            if stated != config:
                config = stated  # the file's own config wins when its shapes agree (checked below)
        weights = to_canonical(names, layout, config, img_range)
        check_weights(weights, config, source=os.path.basename(path))
    except ConvertError:
        raise
    except UnsafePickleError as e:
        raise ConvertError(f"unsafe or malformed pickle: {e}") from None
    except (CheckpointError, LayoutError, WeightsError) as e:
        raise ConvertError(str(e)) from None
    except (IndexError, KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
        # Whatever a hostile file still reaches: one message, never a traceback from a public function.
        raise ConvertError(f"not an RCAN checkpoint ({type(e).__name__}: {e})") from None
    return Converted(weights, config, layout, container, wrapper, os.path.basename(path))


def load_checkpoint(path, img_range: float = 255.0) -> tuple[dict, RCANConfig]:
    """Any supported checkpoint -> (weights in canonical names and layout, config)."""
    c = convert(path, img_range)
    return c.weights, c.config


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_canonical(src, dst, force=False, img_range: float = 255.0) -> Converted:
    if os.path.exists(dst) and not force:
        raise ConvertError(f"{dst} exists (use --force to overwrite)")
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise ConvertError("the output would overwrite the input")
    c = convert(src, img_range)
    try:
        save_weights(dst, c.weights, c.config, source_name=c.source_name, source_sha256=sha256(src),
                     source_layout=f"{c.layout} ({c.container}, {c.wrapper})")
    except (OSError, SafetensorError) as e:   # a full disk, a read-only folder: nothing is left behind
        raise ConvertError(f"cannot write {dst}: {e}") from None
    return c


def info(path, img_range: float = 255.0) -> dict:
    c = convert(path, img_range)
    cfg = json.loads(c.config.to_json())
    return {"file": os.fspath(path), "container": c.container, "layout": c.layout, "wrapper": c.wrapper,
            "config": cfg, **cfg, "tensors": len(c.weights),
            "parameters": int(sum(v.size for v in c.weights.values())),
            "mean_shift_drift": mean_drift(c.weights, c.config)}
