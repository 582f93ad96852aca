"""Loading weights into the nnx RCAN, and the one jitted entry point."""
from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reference.config import RCANConfig
from reference.weights import FORMAT, WeightsError, load_weights, read_metadata
from weights_convert import load_checkpoint

from .conv import autotune
from .model import params
from .model.rcan import LOOPS, RCAN, Loops
from .platform import runtime

WEIGHTS_DIR = Path(__file__).parent / "weights"
# The models this project trains and ships (each with its card: <stem>.md and <stem>.json beside it).
SHIPPED = {"deep": WEIGHTS_DIR / "rcan_deep_x2.safetensors", "compact": WEIGHTS_DIR / "rcan_compact_x2.safetensors",
           "real": WEIGHTS_DIR / "rcan_real_x2.safetensors",
           "real-compact": WEIGHTS_DIR / "rcan_real_compact_x2.safetensors"}
# The real-photo models are fine-tunes of the bicubic ones (same network): --strength interpolates each pair.
BICUBIC_OF = {"real": "deep", "real-compact": "compact"}
REAL_OF = {bicubic: real for real, bicubic in BICUBIC_OF.items()}
# The deep model by default: Set5 ×2 37.75 dB against the compact model's 37.08, for 11× the compute
# (README, "Which model": the measured time of each on a 2000×1500 photo).
DEFAULT_MODEL = "deep"
DEFAULT_WEIGHTS = SHIPPED[DEFAULT_MODEL]
DEFAULT_LOOPS = "scan"


def _loops(loops) -> Loops:
    return LOOPS[loops] if isinstance(loops, str) else loops


def model_from_weights(weights: dict, config: RCANConfig, loops=DEFAULT_LOOPS, dtype=jnp.float32,
                       conv: str = "auto") -> RCAN:
    """Build an nnx RCAN holding these official weights: eval_shape -> split -> fill -> merge.
    conv: the CPU convolution path (one of accel/conv/autotune.py's SETTINGS: auto, xla, winograd, …)."""
    loops = _loops(loops)
    conv = autotune.check_setting(conv, dtype)
    abstract = nnx.eval_shape(lambda: RCAN(config, loops, dtype, rngs=nnx.Rngs(0), conv_path=conv))
    graphdef, state = nnx.split(abstract)
    # jax.device_put, not jnp.asarray: on a GPU jnp.asarray of a large host array passes through a second
    # device buffer (the official model's 29.5 MB stacked kernels: peak 67 MB, device_put 34 MB on an H100,
    # runs/gpu/transfer_peak.py), which raised every later reading of the device's peak memory by 31 MB.
    nnx.replace_by_pure_dict(state, jax.tree.map(jax.device_put, params.to_pure_dict(weights, config, loops)))
    return nnx.merge(graphdef, state)


def model_weights(model: RCAN) -> dict[str, np.ndarray]:
    """The official weights held by an nnx RCAN (for saving a trained model)."""
    tree = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    return params.from_pure_dict(tree, model.config, model.loops)


def read_any_weights(path) -> tuple[dict, RCANConfig]:
    """A canonical file directly; anything else (.pt/.pth, other checkpoint layouts) through weights_convert."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such weights file")
    try:
        return load_weights(path)
    except WeightsError:
        if path.endswith(".safetensors") and _is_canonical(path):
            raise
    return load_checkpoint(path)


def _is_canonical(path) -> bool:
    try:
        return read_metadata(path).get("format") == FORMAT
    except WeightsError:
        return False


def shipped_card(name: str) -> dict | None:
    """The model card (JSON) of a shipped model, or None when it has none."""
    card = SHIPPED[name].with_suffix(".json")
    return json.loads(card.read_text()) if card.is_file() else None


def _shipped_path(name: str) -> Path:
    if name not in SHIPPED:
        raise WeightsError(f"no shipped model {name!r}: choose one of {', '.join(SHIPPED)}")
    path = SHIPPED[name]
    if not path.is_file():
        raise WeightsError(f"the shipped weights {path} are missing: pass --weights W.safetensors "
                           "(or an official RCAN_BIX2.pt)")
    return path


def strength_pair(name: str) -> tuple[str, str]:
    """(bicubic model, real-photo model) of the pair a shipped model belongs to."""
    if name in BICUBIC_OF:
        return BICUBIC_OF[name], name
    if name in REAL_OF:
        return name, REAL_OF[name]
    raise WeightsError(f"--strength needs a shipped model with a real-photo twin ({', '.join(BICUBIC_OF)})")


def shipped_weights(name: str, strength: float | None = None) -> tuple[dict, RCANConfig]:
    """A shipped model's weights; with a strength S in [0, 1], those of its pair interpolated:
    (1 − S)·bicubic + S·real (S = 0 and 1 are the two files exactly, not a sum)."""
    if strength is None:
        return load_weights(_shipped_path(name))
    if not 0 <= strength <= 1:
        raise WeightsError(f"strength must be in [0, 1], got {strength}")
    bicubic, real = strength_pair(name)
    if strength in (0, 1):
        return load_weights(_shipped_path(real if strength == 1 else bicubic))
    (a, config), (b, other) = load_weights(_shipped_path(bicubic)), load_weights(_shipped_path(real))
    if config != other or a.keys() != b.keys():
        raise WeightsError(f"{bicubic} and {real} are not the same network: they cannot be interpolated")
    s = np.float32(strength)
    return {k: ((1 - s) * a[k] + s * b[k]).astype(np.float32) for k in a}, config


def load_model(path=None, scale: int | None = 2, loops=DEFAULT_LOOPS, dtype=jnp.float32, conv: str = "auto",
               model: str | None = None, strength: float | None = None) -> RCAN:
    """An nnx RCAN from a weights file, or a shipped model (path=None: `model`, default DEFAULT_MODEL).

    scale: the factor the caller expects (a mismatch is an error); None accepts the file's own.
    conv: the convolution path (accel/conv/registry.py); auto times the paths once per size class
    (accel/conv/autotune.py).
    strength: for a shipped model, interpolate its bicubic/real-photo pair (shipped_weights).
    """
    if path is None:
        name = model or DEFAULT_MODEL
        if scale not in (None, 2):
            raise WeightsError(f"the shipped models are ×2; for ×{scale} pass --weights (e.g. RCAN_BIX{scale}.pt)")
        weights, config = shipped_weights(name, strength)
        return model_from_weights(weights, config, loops, dtype, conv)
    if model is not None:
        raise WeightsError("give a weights file or a shipped model, not both")
    if strength is not None:
        raise WeightsError("--strength interpolates the shipped models; it does not apply to --weights")
    weights, config = read_any_weights(path)
    if scale is not None and config.scale != scale:
        raise WeightsError(f"{path}: these weights are ×{config.scale}, not ×{scale}")
    return model_from_weights(weights, config, loops, dtype, conv)


def _merge_and_run(graphdef, state, lr, mask):
    return nnx.merge(graphdef, state)(lr, mask)


# One jitted entry per convolution path (accel/conv/autotune.py). Plain jax.jit over (graphdef, state), not
# nnx.jit: nnx.jit hands the module's state back as fresh outputs on every call, a copy of all weights
# (62 MB for the official model) per call.
_JITTED = {path: autotune.jit(_merge_and_run, path, static_argnums=0) for path in autotune.PATHS}


_RUN: set = set()   # (model, input shape, masked) run at least once in this process: compiled


def _run_key(model: RCAN, shape, masked: bool):
    return model.config, jnp.dtype(model.dtype).name, model.loops, model.conv_path, tuple(shape), masked


def first_run(model: RCAN, shape, masked: bool = True) -> bool:
    """Whether forward on a batch of this shape [N, H, W, C] will compile (and, on a CPU, time the
    convolution paths) rather than reuse this process's or the persistent cache's work."""
    if _run_key(model, shape, masked) in _RUN:
        return False
    if model.conv_path == "auto":
        return not autotune.decided(shape[1], shape[2], model.config.n_feats, model.dtype)
    return True


def _times_in_model(run, names, rounds: int = 2) -> dict[str, list[float]]:
    """Each path's forward of this very batch, timed after a run that compiles it, the paths taking turns
    (the autotune's check of its chain's two closest paths)."""
    for name in names:
        run(name).block_until_ready()
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            t = time.perf_counter()
            run(name).block_until_ready()
            times[name].append(time.perf_counter() - t)
    return times


def _choose(model: RCAN, graphdef, state, lr, mask, per_device: int) -> str:
    """The convolution path of this batch (accel/conv/autotune.py), the model's own forward timed (and, on a GPU,
    its compiled temporaries read) where the autotune asks."""
    run = lambda path: _JITTED[path](graphdef, state, lr, mask)   # noqa: E731

    def temporaries(names):
        return {name: _JITTED[name].lower(graphdef, state, lr, mask).compile().memory_analysis().temp_size_in_bytes
                for name in names}
    return autotune.choose(per_device, lr.shape[1], lr.shape[2], model.config.n_feats, model.dtype, model.conv_path,
                           recheck=functools.partial(_times_in_model, run), memory=temporaries)


def _forward(model: RCAN, lr, mask, per_device: int):
    runtime.before_forward()
    graphdef, state = nnx.split(model)
    path = _choose(model, graphdef, state, lr, mask, per_device)
    out = _JITTED[path](graphdef, state, lr, mask)
    _RUN.add(_run_key(model, lr.shape, mask is not None))
    # With runtime.configure(malloc=True): full model at 64×64, steady peak 67 → 50 MB above the start.
    runtime.after_forward()
    return out


def compiled_memory(model: RCAN, shape, masked: bool = False) -> dict[str, float]:
    """XLA's own account of the forward compiled for one device and a batch of this shape [N, H, W, C]:
    MB of temporaries (scratch of every op, convolution workspaces included), arguments and outputs."""
    graphdef, state = nnx.split(model)
    # The autotune may run the model on this shape: zeros (its decision holds for any content).
    lr = jnp.zeros(tuple(shape), jnp.float32)
    mask = jnp.ones((*shape[:3], 1), jnp.float32) if masked else None
    path = _choose(model, graphdef, state, lr, mask, shape[0])
    stats = _JITTED[path].lower(graphdef, state, lr, mask).compile().memory_analysis()
    return {name: getattr(stats, f"{name}_size_in_bytes") / 1e6 for name in ("temp", "argument", "output")}


def forward(model: RCAN, lr, mask=None, shard: bool = True):
    """lr float32 [N, H, W, 3] in [0, rgb_range] -> float32 [N, sH, sW, 3], unclamped (jit-compiled).

    mask [N, H, W, 1] (optional) marks the image inside a zero-padded batch (see accel/model/rcan.py).
    With several devices the batch is split across this process's devices (see shard_batch);
    shard=False keeps it on one. Each sample is computed independently, so the result does not depend on the split.
    """
    if getattr(lr, "ndim", None) != 4 or lr.shape[-1] != model.config.n_colors:
        raise ValueError(f"lr must be [N, H, W, {model.config.n_colors}], got shape {tuple(np.shape(lr))}")
    finite = np.isfinite(lr).all() if isinstance(lr, np.ndarray) else jnp.isfinite(lr).all()
    if not bool(finite):   # NaN in gives NaN out, silently: refuse it
        raise ValueError("lr holds NaN or infinite values")
    n = lr.shape[0]
    if shard and jax.local_device_count() > 1:
        lr, mask = shard_batch(lr, mask)
        return _forward(model, lr, mask, lr.shape[0] // jax.local_device_count())[:n]
    lr = jnp.asarray(lr, jnp.float32)
    return _forward(model, lr, None if mask is None else jnp.asarray(mask, jnp.float32), n)


def _data_sharding():
    """A 1-D mesh over this process's devices, batch axis split. Inference is never collective: under
    jax.distributed each process runs its own images on its own devices (accel/platform/distributed.py)."""
    mesh = Mesh(np.array(jax.local_devices()), ("data",))
    return NamedSharding(mesh, PartitionSpec("data"))


def shard_batch(lr, mask=None):
    """Pad a batch to a multiple of this process's devices and lay it out across them."""
    per = jax.local_device_count()
    lr = np.asarray(lr, np.float32)
    pad = (-lr.shape[0]) % per
    if pad:  # zero samples: computed and dropped (channel attention is per sample, so harmless)
        lr = np.concatenate([lr, np.zeros((pad, *lr.shape[1:]), np.float32)])
        if mask is not None:
            mask = np.concatenate([np.asarray(mask, np.float32), np.zeros((pad, *mask.shape[1:]), np.float32)])
    sharding = _data_sharding()
    lr = jax.device_put(lr, sharding)
    if mask is not None:
        mask = jax.device_put(np.asarray(mask, np.float32), sharding)
    return lr, mask
