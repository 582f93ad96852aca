"""--dtype auto: bfloat16 where it is free, float32 elsewhere.

bfloat16 is taken only where both stored measurements say so: on this kind of CPU the model ran faster in
bfloat16 than in float32 by at least MIN_SPEEDUP (the geometric mean over the measured sizes of
`python -m accel.bench --impls accel accel-bf16`), and the model's own Set5 ×2 PSNR in bfloat16 is within
MAX_COST_DB of float32's (`rcan-evaluate --dtype bfloat16`). Both tables are measurements kept in
accel/weights/precision.json with the commands and files that produced them; a CPU kind or a model that
is not in them gets float32 (an unmeasured model, e.g. `--weights`, included). GPUs keep their rule:
float32 unless `--dtype bfloat16` is asked for.

The kinds: "amx" (Intel Xeons since Sapphire Rapids: AMX tiles for the bfloat16 kernels), "avx512_bf16"
(AMD Zen 4 and Intel Cooper Lake: bfloat16 dot instructions, no tiles), "none" (no bfloat16 instructions:
never measured faster). RCAN_MAX_ISA caps the flags read here, as everywhere.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp

from accel.platform import hardware

TABLE = Path(__file__).parent.parent / "weights" / "precision.json"
MIN_SPEEDUP = 1.25   # float32 time / bfloat16 time, geometric mean over sizes: a margin above the bench's noise
MAX_COST_DB = 0.01   # Set5 ×2 PSNR float32 − bfloat16
CHOICES = ("auto", "float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Precision:
    dtype: object   # jnp.float32 or jnp.bfloat16
    reason: str

    @property
    def name(self) -> str:
        return jnp.dtype(self.dtype).name


@functools.cache
def table() -> dict:
    return json.loads(TABLE.read_text())


def cpu_kind(flags=None) -> str:
    flags = hardware.cpu_flags() if flags is None else flags
    if hardware.AMX_FLAGS <= flags and "avx512_bf16" in flags:
        return "amx"
    return "avx512_bf16" if "avx512_bf16" in flags else "none"


def speedup(kind: str) -> float | None:
    """float32 time / bfloat16 time on this CPU kind, geometric mean over the measured sizes (None: not measured)."""
    rows = table()["speed"].get(kind, {}).get("sizes")
    if not rows:
        return None
    ratios = [row["float32_s"] / row["bfloat16_s"] for row in rows.values()]
    return math.exp(sum(map(math.log, ratios)) / len(ratios))


def choose(setting: str, model_name: str | None, backend: str | None = None, flags=None) -> Precision:
    """The dtype a run uses, and why (a line for the output, --json and the report). setting: auto, float32 or
    bfloat16; model_name: a shipped model's name, None for a weights file."""
    if setting == "float32":
        return Precision(jnp.float32, "--dtype float32")
    if setting == "bfloat16":
        return Precision(jnp.bfloat16, "--dtype bfloat16")
    if setting != "auto":
        raise ValueError(f"--dtype must be one of {', '.join(CHOICES)}, not {setting!r}")
    backend = backend or jax.default_backend()
    if backend != "cpu":
        return Precision(jnp.float32, f"auto: float32 on a {backend.upper()} (--dtype bfloat16 to trade "
                                      "under 0.01 dB for speed)")
    kind = cpu_kind(flags)
    fast = speedup(kind)
    if fast is None or fast < MIN_SPEEDUP:
        measured = f"measured {fast:.2f}× float32's speed" if fast else "never measured faster"
        return Precision(jnp.float32, f"auto: float32 (bfloat16 on this CPU kind, {kind}: {measured})")
    cost = table()["quality"].get(model_name or "", {}).get("set5_cost_db")
    if cost is None:
        return Precision(jnp.float32, "auto: float32 (bfloat16's quality cost is not measured for these weights)")
    if cost > MAX_COST_DB:
        return Precision(jnp.float32, f"auto: float32 (bfloat16 costs {cost:.3f} dB on Set5 with {model_name})")
    change = ("−" if cost > 0 else "+") + f"{abs(cost):.3f}"
    return Precision(jnp.bfloat16, f"auto: bfloat16 ({fast:.2f}× float32's speed on this CPU kind, {kind}; "
                                   f"Set5 {change} dB with {model_name})")
