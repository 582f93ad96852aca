"""accel (JAX + flax.nnx) against the NumPy reference, layer by layer then whole; block loops; cache."""
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st

import accel
import reference
from reference import RCANConfig, rcan
from reference.weights import WeightsError, init_weights, save_weights
from tools import torch_rcan

jax.config.update("jax_default_matmul_precision", "highest")

SMALL = RCANConfig(scale=2, n_resgroups=2, n_resblocks=3, n_feats=16, reduction=4)


def small(loops="unrolled", seed=0):
    weights = init_weights(SMALL, seed)
    return weights, accel.model_from_weights(weights, SMALL, loops)


def feats(seed, h=9, w=11, c=16):
    return np.random.default_rng(seed).normal(size=(h, w, c)).astype(np.float32) * 10


# --- layers ----------------------------------------------------------------------------------------

def test_conv_matches_reference():
    weights, model = small()
    x = np.random.default_rng(0).uniform(0, 255, (9, 11, 3)).astype(np.float32)
    ours = np.asarray(model.head(jnp.asarray(x[None])))[0]
    # 27 products per output: float32 rounding ~1e-5 relative.
    assert_close(ours, rcan.conv2d(x, weights["head.0.weight"], weights["head.0.bias"]), 1e-4, 1e-5, "head conv")


def test_channel_attention_matches_reference():
    weights, model = small(seed=1)
    x = feats(1)
    ours = np.asarray(model.groups[1].blocks[2].attention(jnp.asarray(x[None])))[0]
    assert_close(ours, rcan.channel_attention(weights, "body.1.body.2.body.3", x), 1e-4, 1e-5, "channel attention")


def test_rcab_matches_reference():
    weights, model = small(seed=2)
    x = feats(2)
    ours = np.asarray(model.groups[0].blocks[1](jnp.asarray(x[None])))[0]
    assert_close(ours, rcan.rcab(weights, "body.0.body.1", x), 2e-4, 1e-5, "RCAB")


def test_residual_group_matches_reference():
    weights, model = small(seed=3)
    x = feats(3)
    ours = np.asarray(model.groups[1](jnp.asarray(x[None])))[0]
    # Seven convs deep.
    assert_close(ours, rcan.residual_group(weights, 1, SMALL, x), 3e-4, 1e-5, "residual group")


# --- whole model -----------------------------------------------------------------------------------

@st.composite
def configs(draw):
    n_feats = draw(st.sampled_from([8, 16, 24]))
    reduction = draw(st.sampled_from([r for r in (1, 2, 4, 8) if n_feats % r == 0]))
    return RCANConfig(scale=draw(st.sampled_from([2, 3, 4, 8])), n_resgroups=draw(st.integers(1, 2)),
                      n_resblocks=draw(st.integers(1, 2)), n_feats=n_feats, reduction=reduction)


@settings(max_examples=12)
@given(config=configs(), size=st.sampled_from([(8, 8), (12, 16)]), seed=st.integers(0, 2**16),
       loops=st.sampled_from(sorted(accel.LOOPS)))
def test_forward_matches_reference(config, size, seed, loops):
    # Sizes from two buckets keep the number of XLA compiles bounded.
    weights = init_weights(config, seed)
    lr = np.random.default_rng(seed).uniform(0, 255, (2, *size, 3)).astype(np.float32)
    model = accel.model_from_weights(weights, config, loops)
    ours = np.asarray(accel.forward(model, lr))
    for n in range(2):
        # Outputs ~0..255, tens of float32 layers: 1e-3 absolute, as reference vs torch.
        assert_close(ours[n], reference.forward(weights, config, lr[n]), 1e-3, 1e-6, f"{config} {loops}")


def test_block_loops_agree_and_round_trip():
    weights = init_weights(SMALL, 4)
    lr = np.random.default_rng(4).uniform(0, 255, (1, 10, 7, 3)).astype(np.float32)
    outs = {}
    for name in accel.LOOPS:
        model = accel.model_from_weights(weights, SMALL, name)
        outs[name] = np.asarray(accel.forward(model, lr))
        back = accel.model_weights(model)
        assert all(back[k].tobytes() == weights[k].tobytes() for k in weights), name
    # Same maths, only the loop structure differs: XLA may fuse differently, so allow float32 noise.
    assert_close(outs["scan"], outs["unrolled"], 1e-4, 1e-6, "scan vs unrolled")
    assert_close(outs["mixed"], outs["unrolled"], 1e-4, 1e-6, "mixed vs unrolled")


def test_scanned_loops_read_weights_in_place():
    """The scanned loops's temporaries do not grow with the RCABs per group: each step slices its own
    weights from the stacked parameters instead of copying a whole group's (accel/model/rcan.py)."""
    from accel import api

    def memory(blocks, shape=(1, 8, 8, 3), masked=False):
        config = RCANConfig(scale=2, n_resgroups=2, n_resblocks=blocks, n_feats=32, reduction=4)
        model = accel.model_from_weights(init_weights(config, 0), config, "scan", conv="xla")
        return api.compiled_memory(model, shape, masked)
    few, many = memory(2)["temp"], memory(16)["temp"]
    # A copy of one group's conv kernels would be 2 × 16 × 37 kB more at 16 blocks.
    assert many - few < 0.1, (few, many)
    # XLA's account is of this shape: the output is [N, 2H, 2W, 3] float32; a batch of two needs more.
    two = memory(2, (2, 8, 8, 3), masked=True)
    assert two["output"] == 2 * 16 * 16 * 3 * 4 / 1e6 and two["temp"] > few


def test_mask_makes_padding_exact():
    """A zero-padded image with its mask computes what the image alone computes (any scale)."""
    config = RCANConfig(scale=3, n_resgroups=1, n_resblocks=2, n_feats=8, reduction=2)
    weights = init_weights(config, 5)
    x = np.random.default_rng(5).uniform(0, 255, (7, 9, 3)).astype(np.float32)
    padded = np.zeros((1, 16, 16, 3), np.float32)
    padded[0, :7, :9] = x
    mask = np.zeros((1, 16, 16, 1), np.float32)
    mask[0, :7, :9] = 1
    model = accel.model_from_weights(weights, config, "scan")
    ours = np.asarray(accel.forward(model, padded, mask))[0, :21, :27]
    assert_close(ours, reference.forward(weights, config, x), 1e-3, 1e-6, "masked padding")


@pytest.mark.slow
def test_full_official_x2_matches_reference_and_torch():
    config = RCANConfig.official(2)
    weights = init_weights(config, 0)
    lr = np.random.default_rng(0).uniform(0, 255, (16, 20, 3)).astype(np.float32)
    ours = np.asarray(accel.forward(accel.model_from_weights(weights, config), lr[None]))[0]
    ref = reference.forward(weights, config, lr)
    theirs = torch_rcan.run(torch_rcan.from_weights(weights, config), lr)
    # ≈ 430 conv layers, Winograd or YNNPACK sums on the CPU (≈ 4e-6 relative per conv, accel/conv/winograd.py):
    # 2e-3 on outputs in 0..255.
    e1 = assert_close(ours, ref, 2e-3, 0, "full x2 accel vs reference")
    e2 = assert_close(ours, theirs, 2e-3, 0, "full x2 accel vs torch")
    print(f"full official x2: max |accel - reference| = {e1:.2e}, max |accel - torch| = {e2:.2e}")


def test_bfloat16_is_close_to_float32():
    weights = init_weights(SMALL, 6)
    lr = np.random.default_rng(6).uniform(0, 255, (1, 12, 12, 3)).astype(np.float32)
    f32 = np.asarray(accel.forward(accel.model_from_weights(weights, SMALL), lr))
    bf16 = np.asarray(accel.forward(accel.model_from_weights(weights, SMALL, dtype=jnp.bfloat16), lr))
    assert bf16.dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: ~0.4 % relative per op; a few levels of 255 after 10 layers.
    err = np.abs(bf16 - f32)
    assert err.max() < 8 and err.mean() < 1.5, (err.max(), err.mean())


def test_forward_rejects_bad_shapes():
    _, model = small()
    with pytest.raises(ValueError, match=r"lr must be \[N, H, W, 3\]"):
        accel.forward(model, np.zeros((8, 8, 3), np.float32))


def test_load_model(tmp_path):
    weights = init_weights(SMALL, 7)
    path = tmp_path / "w.safetensors"
    save_weights(path, weights, SMALL)
    model = accel.load_model(path, scale=2)
    assert model.config == SMALL
    with pytest.raises(WeightsError, match="×2, not ×4"):
        accel.load_model(path, scale=4)
    with pytest.raises(WeightsError, match="no such weights file"):
        accel.load_model(tmp_path / "nope.safetensors")


def test_load_model_through_the_converter(tmp_path):
    import torch
    model = torch_rcan.RCAN(SMALL)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "m.pth", _use_new_zipfile_serialization=False)
    ours = accel.load_model(tmp_path / "m.pth")
    lr = np.random.default_rng(8).uniform(0, 255, (6, 6, 3)).astype(np.float32)
    assert_close(np.asarray(accel.forward(ours, lr[None]))[0], torch_rcan.run(model.eval(), lr), 1e-3, 1e-6, ".pth")


# --- persistent compilation cache ------------------------------------------------------------------

CACHE_PROBE = r"""
import json, time, sys
import jax
hits = []
jax.monitoring.register_event_listener(lambda name, **kw: hits.append(name) if "cache_hit" in name else None)
import numpy as np, accel
accel.runtime.configure_from_env()   # what the CLIs do: RCAN_JAX_CACHE names the folder
from reference import RCANConfig, init_weights
c = RCANConfig(scale=2, n_resgroups=2, n_resblocks=2, n_feats=16, reduction=4)
# One fixed convolution path: timing the paths (which a busy machine repeats) compiles programs of its own.
m = accel.model_from_weights(init_weights(c, 0), c, conv="xla")
t = time.perf_counter()
accel.forward(m, np.zeros((1, 24, 24, 3), np.float32)).block_until_ready()
print(json.dumps({"seconds": time.perf_counter() - t, "hits": len(hits)}))
"""


def test_second_process_compiles_from_the_cache(tmp_path):
    env = dict(os.environ, RCAN_JAX_CACHE=str(tmp_path / "cache"))
    runs = [json.loads(subprocess.run([sys.executable, "-c", CACHE_PROBE], env=env, capture_output=True,
                                      text=True, check=True).stdout.strip().splitlines()[-1]) for _ in range(2)]
    assert runs[0]["hits"] == 0 and runs[1]["hits"] >= 1, runs
    assert any((tmp_path / "cache").iterdir())
    env["RCAN_JAX_CACHE"] = "off"
    off = json.loads(subprocess.run([sys.executable, "-c", CACHE_PROBE], env=env, capture_output=True,
                                    text=True, check=True).stdout.strip().splitlines()[-1])
    assert off["hits"] == 0


# --- many devices ----------------------------------------------------------------------------------

SHARD_PROBE = r"""
import sys, jax, numpy as np, accel
from reference import RCANConfig, init_weights
assert jax.device_count() == 4, jax.devices()
from accel.conv import cpu_kernel, registry
scheme = registry.PATHS[sys.argv[1]].kernel if sys.argv[1] in registry.PATHS else None
if scheme and not cpu_kernel.cpu_has(cpu_kernel.LIBRARY[scheme]):   # the portable build there
    real = cpu_kernel.conv3x3
    cpu_kernel.available = lambda scheme="direct": True
    cpu_kernel.conv3x3 = lambda x, k, b=None, scheme="direct", pooled=False: real(x, k, b, scheme, False, pooled)
c = RCANConfig(scale=2, n_resgroups=2, n_resblocks=2, n_feats=16, reduction=4)
dtype = cpu_kernel.dtypes(scheme)[0] if scheme else jax.numpy.float32
m = accel.model_from_weights(init_weights(c, 0), c, dtype=dtype, conv=sys.argv[1])
x = np.random.default_rng(0).uniform(0, 255, (6, 12, 12, 3)).astype(np.float32)   # 6: not a multiple of 4
sharded = accel.forward(m, x)
assert len(sharded.sharding.device_set) == 4 if hasattr(sharded, "sharding") else True
single = np.asarray(accel.forward(m, x, shard=False))
assert np.asarray(sharded).shape == single.shape == (6, 24, 24, 3)
assert np.array_equal(np.asarray(sharded), single), np.abs(np.asarray(sharded) - single).max()
from accel.run.runner import super_resolve
from accel.run.tiles import Plan
img = x[0].repeat(4, 0).repeat(4, 1)                       # 48x48: tiles batched across the devices
t = super_resolve(m, img, Plan(16, overlap=4, batch=4))
assert np.abs(t - super_resolve(m, img, Plan(16, overlap=4, batch=1))).max() == 0
print("ok")
"""


@pytest.mark.parametrize("path", ["auto", "xla", "ynn", "winograd", "winograd-ynn", "kernel-direct",
                                  "kernel-winograd2", "kernel-winograd4"])
def test_sharded_across_4_cpu_devices_equals_one_device(path):
    """Every convolution path: a per-device batch of 2 gives the bits of a batch of 6 on one device (the
    Winograd GEMMs see a different number of tiles, the direct convs a different batch; the bfloat16
    kernels, custom calls, run on each device's shard)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    r = subprocess.run([sys.executable, "-c", SHARD_PROBE, path], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


# --- convolution path (accel/conv/autotune.py) ------------------------------------------------------------

def test_all_conv_paths_run_and_agree(monkeypatch):
    """Each path really compiles a different convolution (else autotuning would be moot), and every
    path gives the reference's output."""
    from accel.conv import autotune, registry
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(1, 24, 24, 64)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 64, 64)) * 0.05, jnp.float32)
    b = jnp.asarray(rng.normal(size=(64,)), jnp.float32)
    # (The C++ kernels: tests/test_cpu_kernel.py; the float32 one is among the paths checked below where it runs.)
    outs = {name: np.asarray(autotune.jit(autotune._chain, name)(x, w, b)) for name in autotune.PATHS
            if not name.startswith("kernel") and registry.runs_on(name, "cpu")}
    for name in ("ynn", "winograd", "winograd-ynn"):
        assert not np.array_equal(outs["xla"], outs[name]), name
        # Two convs with a ReLU: ~1e-6 (YNNPACK's order of sums), ~4e-6 (Winograd) relative to the largest output.
        assert_close(outs[name], outs["xla"], 2e-5 * np.abs(outs["xla"]).max(), 0, f"{name} vs xla conv")

    weights, _ = small()
    lr = np.random.default_rng(4).uniform(0, 255, (20, 24, 3)).astype(np.float32)
    ref = reference.forward(weights, SMALL, lr)
    for path in autotune.paths(jnp.float32):
        ours = np.asarray(accel.forward(accel.model_from_weights(weights, SMALL, conv=path), lr[None]))[0]
        assert_close(ours, ref, 1e-3, 0, f"accel with conv={path} vs reference")


def test_autotune_measures_once_and_remembers(monkeypatch, tmp_path):
    from accel.conv import autotune, cpu_kernel
    from accel.platform import hardware, runtime
    monkeypatch.setattr(runtime, "_settings", runtime._Settings(cache=str(tmp_path)))
    monkeypatch.setattr(autotune, "_decided", {})
    measured = []
    steady = {"xla": [2.0, 2.1], "ynn": [1.0, 1.05], "winograd": [1.5, 1.5], "winograd-ynn": [1.3, 1.3],
              "winograd2": [1.1, 1.1], "kernel-direct": [1.2, 1.2],
              "kernel-winograd2": [1.15, 1.15], "kernel-winograd4": [1.6, 1.6]}

    def fake_time(names, *shape):
        measured.extend(names)
        return {name: steady[name] for name in names}
    monkeypatch.setattr(autotune, "time_paths", fake_time)
    # float32: XLA's four paths, and the float32 kernel where this CPU has AVX-512.
    f32 = ["kernel-winograd4"] * cpu_kernel.available("winograd4") + ["winograd", "winograd-ynn", "xla", "ynn"]
    n = len(f32)
    assert autotune.choose(1, 40, 48, 16, jnp.float32) == "ynn"
    assert sorted(measured) == f32
    assert autotune.choose(4, 40, 48, 16, jnp.float32) == "ynn"      # keyed by the per-sample shape
    assert len(measured) == n
    stored = json.loads((tmp_path / "conv_choices.json").read_text())
    (key, record), = stored.items()
    side = f"side 2^{autotune.size_class(40, 48)}x16|float32"   # keyed by the size class: √(40·48) ≈ 2^5
    assert record["choice"] == "ynn" and record["spread"] == 0.025 and side in key
    assert record["busy"] <= autotune.BUSY_LIMIT
    assert "cores" in key and "jax" in key                           # keyed by the machine

    # A new process (empty memory) reads the decision back instead of measuring again.
    monkeypatch.setattr(autotune, "_decided", {})
    monkeypatch.setattr(autotune, "time_paths", lambda *a: pytest.fail("measured again"))
    assert autotune.choose(1, 40, 48, 16, jnp.float32) == "ynn"
    # With a kernel among the candidates, a decision holds for that kernel code only: changed, it is timed again.
    if cpu_kernel.available("winograd4"):
        assert key.endswith(f"|kernels {cpu_kernel.sources_digest()}")
        digest = cpu_kernel.sources_digest
        monkeypatch.setattr(cpu_kernel, "sources_digest", lambda: "0123456789abcdef")
        monkeypatch.setattr(autotune, "_decided", {})
        monkeypatch.setattr(autotune, "time_paths", fake_time)
        before = len(measured)
        assert autotune.choose(1, 40, 48, 16, jnp.float32) == "ynn" and len(measured) == before + n
        monkeypatch.setattr(cpu_kernel, "sources_digest", digest)
    else:
        assert "|kernels " not in key
    # A damaged file, or an entry without a steady timing (older files), is measured again, not trusted.
    # So is one made before a path was added (it never timed that path).
    # So is one that recorded no reading of the others' load (older files).
    older = {key: {"choice": "ynn", "spread": 0.01, "busy": 0.0, "seconds": {"xla": 2.0, "ynn": 1.0, "winograd": 1.5}}}
    unread = {key: {k: v for k, v in record.items() if k != "busy"}}
    # So is a close call (runner-up within RECHECK_MARGIN) that the model's own times did not settle.
    close = {key: {**record, "seconds": {**record["seconds"], "winograd-ynn": 1.05}}}
    for damaged in ("{not json", json.dumps({key: "ynn"}), json.dumps({key: {"choice": "ynn", "spread": 0.4}}),
                    json.dumps(older), json.dumps(unread), json.dumps(close)):
        (tmp_path / "conv_choices.json").write_text(damaged)
        monkeypatch.setattr(autotune, "_decided", {})
        monkeypatch.setattr(autotune, "time_paths", fake_time)
        before = len(measured)
        assert autotune.choose(1, 40, 48, 16, jnp.float32) == "ynn" and len(measured) == before + n
    # A decision timed while the machine was busy (the winner's runs spread by 50 %) holds for this
    # process only: nothing is written, and the next process measures again.
    (tmp_path / "conv_choices.json").unlink()
    steady["ynn"] = [1.0, 1.5, 1.6]
    monkeypatch.setattr(autotune, "_decided", {})
    before = len(measured)
    assert autotune.choose(1, 40, 48, 16, jnp.float32) == "ynn"
    assert not (tmp_path / "conv_choices.json").exists()
    assert len(measured) - before == n * autotune.ATTEMPTS                # measured again, a few times at most
    # A busy moment that passes: the second measurement is steady, and that one is kept.
    attempts = iter([{**steady, "ynn": [1.0, 1.5, 1.6]}, {**steady, "ynn": [1.0, 1.02]}])
    monkeypatch.setattr(autotune, "time_paths", lambda names, *shape: {n: t[n] for t in [next(attempts)] for n in names})
    monkeypatch.setattr(autotune, "_decided", {})
    assert autotune.choose(1, 40, 48, 16, jnp.float32) == "ynn"
    assert json.loads((tmp_path / "conv_choices.json").read_text())[key]["spread"] == 0.01
    monkeypatch.setattr(autotune, "time_paths", fake_time)
    steady["ynn"] = [1.0, 1.05]
    # Steady timings while another process took 30 % of the machine: kept for this process only.
    (tmp_path / "conv_choices.json").unlink()

    class Busy:
        def __enter__(self):
            self.share = 0.3
            return self

        def __exit__(self, *exc):
            return False
    monkeypatch.setattr(hardware, "OtherLoad", Busy)
    monkeypatch.setattr(autotune, "_decided", {})
    before = len(measured)
    assert autotune.choose(1, 40, 48, 16, jnp.float32) == "ynn"
    assert not (tmp_path / "conv_choices.json").exists() and len(measured) - before == n * autotune.ATTEMPTS
    monkeypatch.undo()
    monkeypatch.setattr(autotune, "time_paths", fake_time)
    monkeypatch.setattr(autotune, "_decided", {})
    # An empty cache folder again: a process that configured the real one (the bench's CLI, run in
    # this process by another test) may hold a stored decision for this shape there.
    monkeypatch.setattr(runtime, "_settings", runtime._Settings(cache=str(tmp_path / "again")))
    # bfloat16 is offered every path, F(2×2) (bfloat16 GEMMs) included, the bfloat16 kernels where the CPU
    # has their instructions and the float32 kernel (bfloat16 in and out) where it has its own; float32 all
    # but the bfloat16 ones.
    measured.clear()
    assert autotune.choose(1, 40, 48, 16, jnp.bfloat16) == "ynn"
    assert sorted(measured) == ["kernel-direct", "kernel-winograd2"] * cpu_kernel.available("direct") + [
        "kernel-winograd4"] * cpu_kernel.available("winograd4") + ["winograd", "winograd-ynn", "winograd2", "xla",
                                                                    "ynn"]


def test_autotune_rechecks_close_paths_in_the_model(monkeypatch, tmp_path):
    """When the chain's two fastest paths are within RECHECK_MARGIN, the model itself, run both ways,
    decides (the chain can misrank them: runs/measurements/autotune_vs_model.txt); clear leads do not."""
    from accel.conv import autotune
    from accel.platform import runtime
    monkeypatch.setattr(runtime, "_settings", runtime._Settings(cache=str(tmp_path)))
    chain = {"xla": [2.0, 2.0], "ynn": [1.9, 1.9], "winograd": [1.0, 1.01], "winograd-ynn": [1.1, 1.1],
             "kernel-winograd4": [3.0, 3.0]}   # (offered where the CPU has AVX-512)
    monkeypatch.setattr(autotune, "time_paths", lambda names, *shape: {n: chain[n] for n in names})
    asked = []

    def recheck(names):
        asked.append(names)
        return {"winograd": [0.5, 0.51], "winograd-ynn": [0.4, 0.41]}
    monkeypatch.setattr(autotune, "_decided", {})
    assert autotune.choose(1, 40, 48, 16, jnp.float32, recheck=recheck) == "winograd-ynn"
    assert asked == [["winograd", "winograd-ynn"]]                      # the chain's top two, fastest first
    (record,) = json.loads((tmp_path / "conv_choices.json").read_text()).values()
    assert record["choice"] == "winograd-ynn" and record["model_seconds"] == {"winograd": 0.5, "winograd-ynn": 0.4}
    assert record["seconds"]["winograd"] == 1.0                         # the chain's times, as before
    chain["winograd-ynn"] = [1.3, 1.3]                                  # a 30 % lead: the chain decides
    monkeypatch.setattr(autotune, "_decided", {})
    (tmp_path / "conv_choices.json").unlink()
    assert autotune.choose(1, 40, 48, 16, jnp.float32, recheck=recheck) == "winograd" and len(asked) == 1

    # Through accel.forward: the check runs the real model both ways, and its output is the model's.
    # (Kept whatever the tiny model's spread or the machine's load: persistence is tested above.)
    monkeypatch.setattr(autotune, "_decided", {})
    monkeypatch.setattr(autotune, "SPREAD_LIMIT", float("inf"))
    monkeypatch.setattr(autotune, "BUSY_LIMIT", float("inf"))
    chain.update({"xla": [1.0, 1.0], "ynn": [3.0, 3.0], "winograd": [1.05, 1.05], "winograd-ynn": [3.0, 3.0]})
    weights, _ = small()
    lr = np.random.default_rng(5).uniform(0, 255, (1, 12, 16, 3)).astype(np.float32)
    out = np.asarray(accel.forward(accel.model_from_weights(weights, SMALL), lr))[0]
    assert_close(out, reference.forward(weights, SMALL, lr[0]), 1e-3, 0, "rechecked forward vs reference")
    stored = json.loads((tmp_path / "conv_choices.json").read_text())
    (record,) = [r for k, r in stored.items() if f"side 2^{autotune.size_class(12, 16)}x" in k]
    assert set(record["model_seconds"]) == {"xla", "winograd"} and all(t > 0 for t in record["model_seconds"].values())
    assert record["choice"] == min(record["model_seconds"], key=record["model_seconds"].get)


def test_autotune_on_a_gpu_takes_the_leaner_of_near_equal_paths(monkeypatch, tmp_path):
    """Off a CPU every path within DEVICE_RECHECK_MARGIN of the chain's fastest runs in the model; of those
    within MEMORY_MARGIN of the fastest, the one whose compiled model needs the least device memory is taken
    (the H100's 64×64 case: cuDNN's convolutions 15.1 ms with 66 MB, Winograd 15.6–17.8 ms with 12 MB; here
    the chain puts Winograd further behind than RECHECK_MARGIN). Without the model's memory the decision
    holds for the process only, and a stored one without it, or one whose model check left out a path now
    near enough to be checked, is measured again."""
    from accel.conv import autotune
    from accel.platform import runtime
    monkeypatch.setattr(runtime, "_settings", runtime._Settings(cache=str(tmp_path)))
    monkeypatch.setattr(autotune.jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(autotune, "SPREAD_LIMIT", float("inf"))
    monkeypatch.setattr(autotune, "BUSY_LIMIT", float("inf"))
    assert autotune.paths(jnp.float32, 64) == ["xla", "xla-nchw", "winograd"]
    chain = {"xla": [1.0, 1.0], "xla-nchw": [0.9, 0.9], "winograd": [1.3, 1.3]}
    model = {"xla": [0.0215, 0.021], "xla-nchw": [0.0151, 0.0152], "winograd": [0.0178, 0.0179]}
    footprint = {"xla": 68e6, "xla-nchw": 66e6, "winograd": 12e6}
    monkeypatch.setattr(autotune, "time_paths", lambda names, *shape: {n: chain[n] for n in names})
    asked = {"recheck": [], "memory": []}

    def recheck(names):
        asked["recheck"].append(names)
        return {n: model[n] for n in names}

    def memory(names):
        asked["memory"].append(names)
        return {n: footprint[n] for n in names}

    def choose(**callbacks):
        monkeypatch.setattr(autotune, "_decided", {})
        return autotune.choose(1, 64, 64, 64, jnp.float32, **callbacks)
    assert choose(recheck=recheck, memory=memory) == "winograd"
    assert asked == {"recheck": [["xla-nchw", "xla", "winograd"]],   # all three within 2× of the chain's best
                     "memory": [["xla-nchw", "winograd"]]}           # xla is 39 % slower in the model
    stored = json.loads((tmp_path / "conv_choices.json").read_text())
    (key, record), = stored.items()
    assert record["choice"] == "winograd" and record["temp_mb"] == {"xla-nchw": 66.0, "winograd": 12.0}
    assert choose(recheck=recheck, memory=memory) == "winograd" and len(asked["recheck"]) == 1   # from disk

    model["winograd"] = [0.030, 0.030]                                  # twice as slow: the faster path stays
    (tmp_path / "conv_choices.json").unlink()
    assert choose(recheck=recheck, memory=memory) == "xla-nchw" and asked["memory"][-1] == ["xla-nchw"]
    (tmp_path / "conv_choices.json").unlink()
    assert choose(recheck=recheck) == "xla-nchw"                       # no memory read: not kept on disk
    assert not (tmp_path / "conv_choices.json").exists()
    del record["temp_mb"]                                               # a record without it: measured again
    (tmp_path / "conv_choices.json").write_text(json.dumps({key: record}))
    assert choose(recheck=recheck, memory=memory) == "xla-nchw" and len(asked["recheck"]) == 4
    record["temp_mb"], record["model_seconds"] = {"xla-nchw": 66.0}, {"xla-nchw": 0.0151, "xla": 0.021}
    (tmp_path / "conv_choices.json").write_text(json.dumps({key: record}))   # winograd near, not checked
    assert choose(recheck=recheck, memory=memory) == "xla-nchw" and len(asked["recheck"]) == 5

    chain["winograd"] = [2.4, 2.4]                  # 2.6× the chain's best (the 256×256 case): not run in the model
    (tmp_path / "conv_choices.json").unlink()
    assert choose(recheck=recheck, memory=memory) == "xla-nchw" and asked["recheck"][-1] == ["xla-nchw", "xla"]


def test_autotune_keeps_no_decision_timed_beside_a_busy_neighbour(monkeypatch, tmp_path):
    """Real load: one spinning process per core. Their share of the machine is read from /proc/stat, and
    the paths timed meanwhile (their runs slowed alike, so steady) are not written to disk."""
    from accel.conv import autotune
    from accel.platform import hardware, runtime
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hardware.cores())]
    try:
        time.sleep(0.3)
        with hardware.OtherLoad() as load:
            time.sleep(0.5)
        assert load.share is not None and load.share > 0.5
        monkeypatch.setattr(runtime, "_settings", runtime._Settings(cache=str(tmp_path)))
        monkeypatch.setattr(autotune, "_decided", {})
        monkeypatch.setattr(autotune, "ATTEMPTS", 1)
        assert autotune.choose(1, 16, 16, 8, jnp.float32) in autotune.paths(jnp.float32)
        assert not (tmp_path / "conv_choices.json").exists()
    finally:
        for p in spin:
            p.kill()
            p.wait(timeout=10)
    with hardware.OtherLoad() as load:
        time.sleep(0.3)
    assert load.share is not None and load.share < 0.5     # the neighbours are gone
    # A neighbour on a CPU this process may not run on slows nothing here, and does not count.
    mine = os.sched_getaffinity(0)
    assert len(mine) >= 2, "this check needs two CPUs (CI has two)"
    ours, theirs = sorted(mine)[:2]
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(spin.pid, {theirs})
        os.sched_setaffinity(0, {ours})
        time.sleep(0.3)
        with hardware.OtherLoad() as load:
            time.sleep(0.5)
        assert load.share is not None and load.share < 0.3, load.share
    finally:
        os.sched_setaffinity(0, mine)
        spin.kill()
        spin.wait(timeout=10)


def test_autotune_real_measurement_and_fixed_setting(monkeypatch):
    from accel.conv import autotune
    monkeypatch.setattr(autotune, "_decided", {})
    assert autotune.choose(1, 16, 16, 8, jnp.float32) in autotune.PATHS
    times = autotune.time_paths(["ynn", "winograd"], 1, 16, 16, 8, jnp.float32)
    assert sorted(times) == ["winograd", "ynn"] and all(0 < min(t) < 1 and len(t) >= 2 for t in times.values())
    assert autotune.choose(1, 16, 16, 8, jnp.float32, "xla") == "xla"
    with pytest.raises(ValueError, match="conv must be one of auto, xla, xla-nchw, ynn, winograd, winograd-ynn, "
                                         "winograd2, kernel-direct, kernel-winograd2, kernel-winograd4; "
                                         "got 'cudnn'"):
        autotune.choose(1, 16, 16, 8, jnp.float32, "cudnn")
    with pytest.raises(ValueError, match="conv winograd2 is not offered for float32: use one of xla, ynn, winograd, "
                                         "winograd-ynn"):
        autotune.choose(1, 16, 16, 8, jnp.float32, "winograd2")


XEON_AMX = ("vendor_id\t: GenuineIntel", "model name\t: Intel(R) Xeon(R) Platinum 8480+",
            "flags\t\t: sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 amx_bf16 amx_tile",
            "cpu MHz\t\t: 2000.000")


@pytest.mark.parametrize("level, flags, bf16_builds, f32_builds", [
    ("", "avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile", ["amx", "avx512bf16"], ["avx512", "avx2"]),
    ("avx512_bf16", "avx2 fma avx512f avx512_bf16", ["avx512bf16"], ["avx512", "avx2"]),
    ("avx512", "avx2 fma avx512f", [], ["avx512", "avx2"]),
    ("AVX2", "avx2 fma", [], ["avx2"]),
])
def test_max_isa_takes_the_flags_above_it_as_absent(monkeypatch, level, flags, bf16_builds, f32_builds):
    """RCAN_MAX_ISA runs an AMX Xeon as an older CPU would: its kernels' builds, the autotune's key, the peak."""
    from accel.conv import cpu_kernel
    from accel.platform import hardware
    monkeypatch.setattr(hardware, "cpuinfo", lambda: XEON_AMX)
    monkeypatch.setenv("RCAN_MAX_ISA", level)
    assert " ".join(f for f in hardware.NOTABLE_FLAGS if f in hardware.cpu_flags()) == flags
    assert "avx512_vnni" in hardware.cpu_flags() or level == "AVX2"   # what is not above the cap stays
    assert cpu_kernel.native_builds("bf16") == bf16_builds and cpu_kernel.native_builds("f32") == f32_builds
    assert hardware.describe_cpu().endswith(f"{flags}, RCAN_MAX_ISA={level.lower()}" if level else flags)
    # Intel's AVX-512 doubles the FMA width: the peak under an AVX2 cap is half.
    per_core = 64 if "avx512f" in flags else 32
    assert hardware.cpu_peak_gflops() == pytest.approx(hardware.cores() * per_core * 2.0)


def test_max_isa_caps_xla_and_torch_and_refuses_an_unknown_level(monkeypatch):
    from accel.platform import hardware, runtime
    monkeypatch.setenv("RCAN_MAX_ISA", "avx2")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")   # a setting of one's own is kept
    runtime.cap_isa()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false --xla_cpu_max_isa=AVX2"
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2" and os.environ["ATEN_CPU_CAPABILITY"] == "default"
    runtime.cap_isa()   # once is enough
    assert os.environ["XLA_FLAGS"].count("--xla_cpu_max_isa") == 1
    monkeypatch.setenv("RCAN_MAX_ISA", "sse2")
    with pytest.raises(ValueError, match="^RCAN_MAX_ISA=sse2: not a level; use one of avx2, avx512, avx512_bf16$"):
        hardware.cpu_flags()
    code = subprocess.run([sys.executable, "-m", "accel.upscale", "in.png"], capture_output=True, text=True,
                          env=dict(os.environ, RCAN_MAX_ISA="sse2"))
    assert code.returncode == 2 and code.stderr.strip().splitlines() == [
        "error: RCAN_MAX_ISA=sse2: not a level; use one of avx2, avx512, avx512_bf16"]


IMPORT_PROBE = r"""
import ctypes, json, jax
before = {k: getattr(jax.config, k) for k in ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                                              "jax_persistent_cache_min_entry_size_bytes")}
calls = []
import accel.platform.runtime as runtime
class Spy:   # stands in for libc: records every allocator call accel makes
    def __getattr__(self, name):
        return lambda *a: calls.append(name)
runtime._LIBC = Spy()
import accel, numpy as np
from reference import RCANConfig, init_weights
c = RCANConfig(scale=2, n_resgroups=1, n_resblocks=1, n_feats=8, reduction=2)
accel.forward(accel.model_from_weights(init_weights(c, 0), c), np.zeros((1, 8, 8, 3), np.float32))
after = {k: getattr(jax.config, k) for k in before}
unconfigured = list(calls)
runtime.configure(cache=None, malloc=True)
accel.forward(accel.model_from_weights(init_weights(c, 0), c), np.zeros((1, 8, 8, 3), np.float32))
print(json.dumps({"config_changed": before != after, "allocator_calls": unconfigured, "configured_calls": calls}))
"""


def test_importing_and_calling_accel_changes_nothing_process_wide():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", IMPORT_PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert not out["config_changed"] and out["allocator_calls"] == [], out
    assert out["configured_calls"] == ["mallopt", "malloc_trim"], out   # opt-in: configure() turns them on


# --- Winograd F(4×4, 3×3) (accel/conv/winograd.py) --------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(1, 13), w=st.integers(1, 13), cin=st.integers(1, 6),
       cout=st.integers(1, 6), seed=st.integers(0, 2**16), max_tiles=st.integers(1, 1024))
def test_winograd_conv_matches_reference(n, h, w, cin, cout, seed, max_tiles):
    """Any size (not only whole 4×4 tiles: the zero padding up to whole tiles must act like SAME's), any
    channel counts and any cut into strips (each padded alone), against the reference's im2col conv."""
    from accel.conv import winograd
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, h, w, cin)).astype(np.float32) * 10
    k = rng.normal(size=(cout, cin, 3, 3)).astype(np.float32)            # official OIHW
    b = rng.normal(size=(cout,)).astype(np.float32)
    f = jax.jit(lambda x, k, b: winograd.conv3x3(x, k, b, max_tiles=max_tiles))
    ours = np.asarray(f(jnp.asarray(x), jnp.asarray(k.transpose(2, 3, 1, 0)), jnp.asarray(b)))
    for i in range(n):
        ref = rcan.conv2d(x[i], k, b)
        # float32 (6e-8) through transforms with coefficients up to 25 (in) and 8 (out): rounding scales
        # with the largest terms any tile sums, 9·cin·max|x|·max|k| (not with the output itself).
        scale = 9 * cin * np.abs(x[i]).max() * np.abs(k).max() + np.abs(b).max()
        assert_close(ours[i], ref, 2e-6 * scale, 0, f"winograd conv {n}x{h}x{w}x{cin}->{cout}")


def test_winograd_runs_in_strips_on_a_cpu_only(monkeypatch):
    """By default a CPU cuts a conv of more than MAX_TILES tiles into strips run one after another under
    a scan (cache-sized GEMMs); other backends run it whole. Both compute the same convolution."""
    from accel.conv import winograd
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(1, 144, 144, 4)), jnp.float32)          # 36 × 36 = 1296 tiles
    k = jnp.asarray(rng.normal(size=(3, 3, 4, 4)), jnp.float32)

    def run():
        f = lambda x, k: winograd.conv3x3(x, k)
        return "scan" in str(jax.make_jaxpr(f)(x, k)), np.asarray(jax.jit(f)(x, k))
    strips, on_cpu = run()
    monkeypatch.setattr(winograd.jax, "default_backend", lambda: "gpu")
    one, elsewhere = run()
    assert strips and not one
    assert_close(elsewhere, on_cpu, 1e-5 * np.abs(on_cpu).max(), 0, "one strip vs strips")


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(1, 9), w=st.integers(1, 9), cin=st.integers(1, 6),
       cout=st.integers(1, 6), seed=st.integers(0, 2**16), max_tiles=st.integers(1, 1024))
def test_winograd_f2_conv_matches_reference(n, h, w, cin, cout, seed, max_tiles):
    """F(2×2, 3×3), in float32: any size, channel counts and strips, against the reference's conv."""
    from accel.conv import winograd
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, h, w, cin)).astype(np.float32) * 10
    k = rng.normal(size=(cout, cin, 3, 3)).astype(np.float32)
    b = rng.normal(size=(cout,)).astype(np.float32)
    f = jax.jit(lambda x, k, b: winograd.conv3x3(x, k, b, max_tiles=max_tiles, scheme="f2"))
    ours = np.asarray(f(jnp.asarray(x), jnp.asarray(k.transpose(2, 3, 1, 0)), jnp.asarray(b)))
    for i in range(n):
        scale = 9 * cin * np.abs(x[i]).max() * np.abs(k).max() + np.abs(b).max()
        assert_close(ours[i], rcan.conv2d(x[i], k, b), 1e-6 * scale, 0, f"F(2×2) conv {n}x{h}x{w}x{cin}->{cout}")


def test_bfloat16_winograd_f2_stays_at_bfloat16_accuracy():
    """The bfloat16 path (F(2×2) with bfloat16 GEMMs summed in float32): one conv errs about as much as
    bfloat16's direct conv (relative RMS 2.3e-3 here; F(4×4) with bfloat16 GEMMs: 2.6e-2), F(4×4) on
    bfloat16 input keeps its GEMMs in float32 and errs no more than the direct conv (both round the
    output), and the model stays as close to float32 as with XLA's bfloat16 conv on either path
    (test_bfloat16_is_close_to_float32's bound)."""
    from accel.conv import autotune, winograd
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 32, 32, 64)).astype(np.float32)
    k = (rng.standard_normal((3, 3, 64, 64)) * 0.05).astype(np.float32)
    exact = np.asarray(jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                                    precision="highest"))
    rms = lambda y: float(np.sqrt(np.mean((np.asarray(y, np.float32) - exact) ** 2) / np.mean(exact ** 2)))
    bf = lambda a: jnp.asarray(a, jnp.bfloat16)
    f2 = rms(jax.jit(lambda x, k: winograd.conv3x3(x, k, scheme="f2"))(bf(x), bf(k)))
    f4 = rms(jax.jit(lambda x, k: winograd.conv3x3(x, k, scheme="f4"))(bf(x), bf(k)))
    direct = rms(jax.lax.conv_general_dilated(bf(x), bf(k), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    assert f2 < 2.5 * direct and f4 < 1.1 * direct, (f2, f4, direct)
    assert "winograd2" in autotune.paths(jnp.bfloat16) and "winograd2" not in autotune.paths(jnp.float32)
    weights = init_weights(SMALL, 6)
    lr = np.random.default_rng(6).uniform(0, 255, (1, 12, 12, 3)).astype(np.float32)
    f32 = np.asarray(accel.forward(accel.model_from_weights(weights, SMALL), lr))
    for path in ("winograd2", "winograd-ynn"):
        ours = np.asarray(accel.forward(accel.model_from_weights(weights, SMALL, dtype=jnp.bfloat16, conv=path), lr))
        err = np.abs(ours - f32)
        assert err.max() < 8 and err.mean() < 1.5, (path, err.max(), err.mean())
    with pytest.raises(ValueError, match="not offered for float32"):
        accel.forward(accel.model_from_weights(weights, SMALL, conv="winograd2"), lr)


def test_winograd_replaces_only_square_3x3_convs():
    """Under registry.enabled() the model's Cin = Cout 3×3 convs change (different rounding) while the
    head (3 → C), the upsampler (C → 4C), the tail and the 1×1 mean shifts stay bit-identical; outside it
    nothing changes."""
    from accel.conv import registry
    _, model = small()
    x = jnp.asarray(np.random.default_rng(5).normal(size=(1, 9, 10, 16)), jnp.float32)
    rgb = jnp.asarray(np.random.default_rng(6).uniform(0, 255, (1, 9, 10, 3)), jnp.float32)
    layers = {"body conv": (model.body_conv, x), "head": (model.head, rgb), "upsampler": (model.upsampler[0], x),
              "tail": (model.tail, x), "sub_mean": (model.sub_mean, rgb)}
    direct = {name: np.asarray(jax.jit(lambda a, f=f: f(a))(a)) for name, (f, a) in layers.items()}
    with registry.enabled():
        wino = {name: np.asarray(jax.jit(lambda a, f=f: f(a))(a)) for name, (f, a) in layers.items()}
    assert not np.array_equal(wino["body conv"], direct["body conv"])
    assert_close(wino["body conv"], direct["body conv"], 1e-5 * np.abs(direct["body conv"]).max(), 0, "body conv")
    for name in ("head", "upsampler", "tail", "sub_mean"):
        assert np.array_equal(wino[name], direct[name]), name
    again = np.asarray(jax.jit(lambda a: model.body_conv(a))(x))
    assert np.array_equal(again, direct["body conv"])
