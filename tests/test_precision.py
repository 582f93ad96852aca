"""--dtype auto (accel/run/precision.py): bfloat16 only where the stored measurements show it faster on this CPU
kind and within 0.01 dB on Set5 for the model; the CLI says which dtype ran and why."""
import json
import subprocess
import sys

import jax.numpy as jnp
import pytest

from accel.platform import hardware
from accel.run import precision

AMX = frozenset({"avx2", "fma", "avx512f", "avx512_bf16", *hardware.AMX_FLAGS})
ZEN4 = frozenset({"avx2", "fma", "avx512f", "avx512_bf16"})
AVX2 = frozenset({"avx2", "fma"})


def test_the_stored_measurements_decide_per_cpu_kind_and_model():
    assert precision.cpu_kind(AMX) == "amx" and precision.cpu_kind(ZEN4) == "avx512_bf16"
    assert precision.cpu_kind(AVX2) == "none"
    # AMX tiles: bfloat16 for the shipped models whose Set5 cost was measured under 0.01 dB.
    changes = {"deep": "−0.005", "compact": "−0.008", "real": "−0.004", "real-compact": "+0.014"}
    for model, change in changes.items():
        chosen = precision.choose("auto", model, "cpu", AMX)
        assert chosen.dtype == jnp.bfloat16 and f"Set5 {change} dB" in chosen.reason, chosen
    assert precision.speedup("amx") >= precision.MIN_SPEEDUP
    # Zen 4: float32 has its own kernel there and bfloat16 is not faster by the margin.
    zen4 = precision.choose("auto", "deep", "cpu", ZEN4)
    assert zen4.dtype == jnp.float32 and "avx512_bf16" in zen4.reason and precision.speedup("avx512_bf16") < 1.25
    assert precision.choose("auto", "deep", "cpu", AVX2).dtype == jnp.float32
    # Weights whose bfloat16 cost is not measured, and GPUs, keep float32; explicit settings are obeyed.
    unmeasured = precision.choose("auto", None, "cpu", AMX)
    assert unmeasured.dtype == jnp.float32 and "not measured" in unmeasured.reason
    assert precision.choose("auto", "deep", "gpu", AMX).dtype == jnp.float32
    assert precision.choose("float32", "deep", "cpu", AMX).dtype == jnp.float32
    assert precision.choose("bfloat16", None, "cpu", AVX2).dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="--dtype must be one of auto, float32, bfloat16"):
        precision.choose("float16", "deep")


def test_a_model_measured_too_costly_keeps_float32(monkeypatch):
    table = json.loads(precision.TABLE.read_text())
    table["quality"]["deep"]["set5_cost_db"] = 0.02
    monkeypatch.setattr(precision, "table", lambda: table)
    chosen = precision.choose("auto", "deep", "cpu", AMX)
    assert chosen.dtype == jnp.float32 and "costs 0.020 dB" in chosen.reason


def test_the_cli_says_which_dtype_ran_and_why(tmp_path):
    from conftest import SET5
    from PIL import Image
    Image.open(SET5 / "LR_x2" / "bird_LRBI_x2.png").crop((0, 0, 24, 20)).save(tmp_path / "a.png")
    run = subprocess.run([sys.executable, "-m", "accel.upscale", str(tmp_path / "a.png"), "--model", "compact",
                          "--json"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    row = json.loads(run.stdout.splitlines()[-1])
    expected = precision.choose("auto", "compact")
    assert row["dtype"] == expected.name and row["dtype_reason"] == expected.reason
    first = run.stderr.splitlines()[0]
    assert first.startswith("model: compact for ") and f"; {expected.name}: {expected.reason}" in first, first
