"""Training: the loss goes down; resume is exact; the on-device crops are aligned; data parallel and
bfloat16 steps agree with the plain float32 step; the time budget ends a run with a usable checkpoint."""
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import SET5

from accel.data import TrainingImages, dihedral_coords, draw_crops, list_images
from accel.train import RunOptions, TrainConfig, Trainer, main, train
from reference import RCANConfig
from reference.metrics import imresize
from reference.weights import load_weights

TINY = RCANConfig(scale=2, n_resgroups=1, n_resblocks=2, n_feats=8, reduction=2)
TINY_JSON = '{"n_resgroups": 1, "n_resblocks": 2, "n_feats": 8, "reduction": 2}'


@pytest.fixture(scope="module")
def images():
    return TrainingImages(list_images([SET5 / "HR_x2"], exclude=["woman_HR_x2"]), 2, 16)


def test_loss_goes_down(images):
    trainer = Trainer(TrainConfig(TINY, steps=60, batch=4, patch=16, peak_lr=2e-3, warmup=5))
    trainer.set_data(images)
    losses = [float(trainer.train_step()) for _ in range(60)]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10]), losses


def _undo(patch, t):
    """The inverse of the flip/turn t (dihedral_coords), in NumPy: out[u, v] = src[F(T(u, v))], so
    src = F(T(out)) with T the transpose and F the flips (each its own inverse), applied in that order."""
    patch = patch.transpose(1, 0, 2) if t & 1 else patch
    if t & 2:
        patch = patch[::-1]
    return patch[:, ::-1] if t & 4 else patch


def test_crops_are_the_aligned_regions_of_each_image(images):
    assert len(images) == 4 and "woman_HR_x2.png" not in images.names
    trainer = Trainer(TrainConfig(TINY, steps=10, batch=32, patch=16))
    trainer.set_data(images)
    lr, hr = map(np.asarray, trainer.batch(7))
    assert lr.shape == (32, 16, 16, 3) and hr.shape == (32, 32, 32, 3)
    assert np.array_equal(lr, np.asarray(trainer.batch(7)[0]))            # a pure function of (seed, step)
    assert not np.array_equal(lr, np.asarray(trainer.batch(8)[0]))
    key = jax.random.fold_in(jax.random.key(0), 7)
    index, y, x, t = map(np.asarray, draw_crops(key, images.lr_size, 32, 16))
    assert len(set(t.tolist())) > 4                                       # the flips/turns are drawn
    for n in range(32):
        i, yy, xx, tt = int(index[n]), int(y[n]), int(x[n]), int(t[n])
        h, w = images.lr_size[i]
        assert 0 <= yy <= h - 16 and 0 <= xx <= w - 16                    # inside the image, not the padding
        # Exactly the LR image's region, and exactly the HR region that LR region was made from.
        assert np.array_equal(_undo(lr[n], tt), images.lr[i, yy:yy + 16, xx:xx + 16])
        assert np.array_equal(_undo(hr[n], tt), images.hr[i, 2 * yy:2 * yy + 32, 2 * xx:2 * xx + 32])
    # The packed LR is MATLAB's bicubic of the packed HR (computed once per image).
    h, w = images.lr_size[0]
    assert np.array_equal(images.lr[0, :h, :w], imresize(images.hr[0, :2 * h, :2 * w], 0.5))


def test_the_eight_flips_and_turns_are_distinct():
    grid = np.arange(9).reshape(3, 3)
    seen = {tuple(grid[np.asarray(a), np.asarray(b)].ravel()) for a, b in (dihedral_coords(3, t) for t in range(8))}
    assert len(seen) == 8


def test_resume_gives_the_same_weights(tmp_path):
    common = ["--data", str(SET5 / "HR_x2"), "--scale", "2", "--config", TINY_JSON, "--steps", "6",
              "--batch", "2", "--patch", "16", "--every", "2", "--quiet", "--warmup", "2"]
    assert main(common + ["--out", str(tmp_path / "straight.safetensors")]) == 0
    ckpt = tmp_path / "run.ckpt"
    assert main(common + ["--out", str(tmp_path / "resumed.safetensors"), "--checkpoint", str(ckpt),
                          "--stop-after", "3"]) == 0
    assert main(common + ["--out", str(tmp_path / "resumed.safetensors"), "--checkpoint", str(ckpt)]) == 0
    a, ca = load_weights(tmp_path / "straight.safetensors")
    b, cb = load_weights(tmp_path / "resumed.safetensors")
    assert ca == cb == TINY
    for k in a:
        assert np.array_equal(a[k], b[k]), k   # bit-identical: same batches, same optimizer state
    # A checkpoint from another schedule is refused (exit 2, one line) rather than silently mixed.
    other = [("9" if a == "6" else a) for a in common]   # --steps 9
    assert main(other + ["--out", str(tmp_path / "x.safetensors"), "--checkpoint", str(ckpt)]) == 2


def test_checkpoint_moves_between_block_loops_and_keeps_bfloat16_moments_close(tmp_path, images):
    tc = TrainConfig(TINY, steps=20, batch=4, patch=16, warmup=2)
    a = Trainer(tc, loops="unrolled")
    a.set_data(images)
    for _ in range(3):
        a.train_step()
    a.save_checkpoint(tmp_path / "f32.ckpt")
    a.save_checkpoint(tmp_path / "bf16.ckpt", moments="bfloat16")
    b = Trainer(tc, loops="scan")                        # another loops: official names in the file
    b.set_data(images)
    b.load_checkpoint(tmp_path / "f32.ckpt")
    assert b.step == 3 and int(b.opt_state[0].count) == 3
    for k, v in a.weights().items():
        assert np.array_equal(v, b.weights()[k]), k
    a.train_step(), b.train_step()
    for k, v in a.weights().items():                        # same maths, other loop order: float32 rounding
        np.testing.assert_allclose(b.weights()[k], v, rtol=1e-4, atol=1e-6, err_msg=k)
    c = Trainer(tc, loops="unrolled")
    c.set_data(images)
    c.load_checkpoint(tmp_path / "bf16.ckpt")
    c.train_step()
    for k, v in a.weights().items():
        # Moments rounded to bfloat16 (8 bits): one Adam step of ≤ lr (5e-4 at most) moves by a
        # slightly different amount; far below the step itself.
        np.testing.assert_allclose(c.weights()[k], v, rtol=0, atol=5e-5, err_msg=k)


def test_bfloat16_step_is_finite_and_close_to_float32(images):
    tc = TrainConfig(TINY, steps=20, batch=4, patch=16, warmup=0, peak_lr=1e-3)
    results = {}
    for dtype in ("float32", "bfloat16"):
        t = Trainer(tc, dtype=dtype)
        t.set_data(images)
        before = t.weights()
        loss = float(t.train_step())
        delta = {k: t.weights()[k] - before[k] for k in before}
        results[dtype] = loss, delta
    (l32, d32), (l16, d16) = results["float32"], results["bfloat16"]
    assert np.isfinite(l16) and abs(l16 - l32) < 0.02 * l32, (l16, l32)   # bf16 convs: ~3 significant digits
    # The first Adam step moves each weight by ≈ lr·sign(grad): the signs agree for nearly all weights.
    signs = np.concatenate([np.sign(d16[k]).ravel() == np.sign(d32[k]).ravel() for k in d32])
    assert signs.mean() > 0.9, signs.mean()
    assert all(np.isfinite(v).all() for v in d16.values())


SHARD_PROBE = r"""
import json, sys
import jax, numpy as np
from accel.data import TrainingImages, list_images
from accel.train import TrainConfig, Trainer
from reference import RCANConfig
assert jax.device_count() == 4, jax.devices()
images = TrainingImages(list_images([sys.argv[1]]), 2, 16)
tc = TrainConfig(RCANConfig(scale=2, n_resgroups=1, n_resblocks=2, n_feats=8, reduction=2), steps=10, batch=8,
                 patch=16, warmup=0, peak_lr=1e-3)
out = {}
for n in (1, 4):
    t = Trainer(tc, devices=jax.devices()[:n])
    t.set_data(images)
    losses = [float(t.train_step()) for _ in range(2)]
    out[n] = losses, {k: v.tolist() for k, v in t.weights().items()}
    if n == 4:   # the batch really is split: each device holds a quarter of it
        hlo = t._train_step.lower(*t.step_arguments()).compile().as_text()
w1, w4 = out[1][1], out[4][1]
diff = max(float(np.max(np.abs(np.asarray(w1[k]) - np.asarray(w4[k])))) for k in w1)
print(json.dumps({"loss1": out[1][0], "loss4": out[4][0], "max_weight_diff": diff,
                  "all_reduce": "all-reduce" in hlo}))
"""


def test_training_step_over_4_cpu_devices_equals_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", RCAN_JAX_CACHE="off",
               JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", SHARD_PROBE, str(SET5 / "HR_x2")], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["all_reduce"], "the 4-device step does not reduce gradients across devices"
    # Same batch, same maths; only the order of the gradient sums differs (per-device partial sums, then
    # an all-reduce), so float32 rounding: relative 1e-5 on the loss. Two Adam steps move each weight by
    # ≈ 2e-3; a flipped sign of a near-zero gradient component could move it by up to 2·lr = 2e-3.
    np.testing.assert_allclose(out["loss4"], out["loss1"], rtol=1e-5)
    assert out["max_weight_diff"] < 2e-3, out


def test_time_budget_ends_on_time_with_a_loadable_checkpoint(tmp_path):
    tc = TrainConfig(TINY, steps=100000, batch=2, patch=16, warmup=2)
    run = RunOptions([str(SET5 / "HR_x2")], str(tmp_path / "w.safetensors"), checkpoint=str(tmp_path / "c.ckpt"),
                     every=100000, time_budget=8.0, quiet=True)
    t0 = time.time()
    result = train(tc, run, log=lambda m: None)
    wall = time.time() - t0
    assert 0 < result["step"] < tc.steps and wall < 8.0 + 2.0, (result, wall)
    weights, config = load_weights(tmp_path / "w.safetensors")
    assert config == TINY
    t = Trainer(tc)
    assert int(t.load_checkpoint(tmp_path / "c.ckpt")["step"]) == result["step"] == t.step
    for k, v in weights.items():
        assert np.array_equal(v, t.weights()[k]), k


def test_resume_without_moments_comes_back_gently(tmp_path, images):
    """Fresh Adam moments make the first update ≈ lr·sign(gradient) for every weight at once; after a
    resume without moments the learning rate is ramped back over REWARM steps instead."""
    from accel.train import REWARM
    tc = TrainConfig(TINY, steps=50, batch=4, patch=16, warmup=0, peak_lr=1e-3)
    a = Trainer(tc)
    a.set_data(images)
    for _ in range(3):
        a.train_step()
    a.save_checkpoint(tmp_path / "c.ckpt", moments="none")
    b = Trainer(tc)
    b.set_data(images)
    b.load_checkpoint(tmp_path / "c.ckpt")
    before = b.weights()
    b.train_step()
    moved = max(float(np.abs(b.weights()[k] - before[k]).max()) for k in before)
    # Without the ramp every weight would move by ≈ lr = 1e-3 here; with it, by lr / REWARM at most.
    assert 0 < moved <= 1.5 * tc.peak_lr / REWARM, moved


def test_learning_rate_is_optax_warmup_cosine():
    import optax

    from accel.train import END_LR, learning_rate
    for steps, warmup in ((1000, 200), (50, 0), (10, 20)):
        tc = TrainConfig(TINY, steps=steps, warmup=warmup, peak_lr=3e-4)
        w = min(warmup, steps - 1)
        schedule = optax.warmup_cosine_decay_schedule(0.0, tc.peak_lr, w, max(steps, w + 1), tc.peak_lr * END_LR)
        for step in sorted({0, 1, w, w + 1, steps // 2, steps - 1, steps, steps + 5}):
            assert learning_rate(tc, step) == pytest.approx(float(schedule(step)), rel=1e-5, abs=1e-12), (steps, step)


def test_steps_fit_ends_the_schedule_with_the_time_budget(tmp_path):
    """--steps fit times the first steps, then sizes the schedule so that it ends, at 1 % of the peak
    learning rate, when the budget does; the checkpoint records the fitted length, so a resume is exact."""
    from accel.train import END_LR, UNFITTED, checkpoint_config, learning_rate
    budget = 12.0
    tc = TrainConfig(TINY, steps=UNFITTED, batch=2, patch=16, warmup=5)
    run = RunOptions([str(SET5 / "HR_x2")], str(tmp_path / "w.safetensors"), checkpoint=str(tmp_path / "c.ckpt"),
                     every=100000, time_budget=budget, quiet=True)
    t0 = time.time()
    result = train(tc, run, log=lambda m: None)
    wall = time.time() - t0
    fitted = checkpoint_config(tmp_path / "c.ckpt")
    assert fitted.steps == result["schedule_steps"] < UNFITTED
    assert fitted == TrainConfig(TINY, steps=fitted.steps, batch=2, patch=16, warmup=5)
    # Ended by its own schedule (not cut by the budget, save for a slower machine late in the run) and on time.
    assert 0.8 * fitted.steps <= result["step"] <= fitted.steps and wall < budget + 2.0, (result, wall)
    assert learning_rate(fitted, fitted.steps) == pytest.approx(END_LR * fitted.peak_lr)


def test_init_takes_the_weights_of_a_checkpoint(tmp_path, images):
    from accel.train import initial_weights
    tc = TrainConfig(TINY, steps=5, batch=2, patch=16)
    a = Trainer(tc)
    a.set_data(images)
    a.train_step()
    a.save_checkpoint(tmp_path / "c.ckpt", moments="none")
    weights, config = initial_weights(tmp_path / "c.ckpt")
    assert config == TINY and all(np.array_equal(v, a.weights()[k]) for k, v in weights.items())


def test_steps_fit_needs_a_budget_and_a_new_schedule(tmp_path, capsys):
    common = ["--data", str(SET5 / "HR_x2"), "--out", str(tmp_path / "w.safetensors"), "--config", TINY_JSON]
    with pytest.raises(SystemExit) as e:
        main([*common, "--steps", "fit"])
    assert e.value.code == 2 and "--time-budget" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([*common, "--steps", "many"])
    assert e.value.code == 2 and "'fit'" in capsys.readouterr().err
