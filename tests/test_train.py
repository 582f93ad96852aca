"""Training: the loss goes down; a stopped and resumed run ends with the same weights; the data pipeline."""
import numpy as np
import pytest

from accel.data import PairSet, list_images
from accel.train import Trainer, main
from reference import RCANConfig
from reference.metrics import imresize
from reference.weights import load_weights

from conftest import SET5

TINY = RCANConfig(scale=2, n_resgroups=1, n_resblocks=2, n_feats=8, reduction=2)


def test_loss_goes_down_on_a_fixed_batch():
    pairs = PairSet(list_images([SET5 / "HR_x2"]), 2, 16)
    lr, hr = pairs.batch(0, 0, 4, 16)
    trainer = Trainer(TINY, seed=0, peak_lr=2e-3, steps=40, warmup=5)
    losses = [trainer.train_step(lr, hr) for _ in range(40)]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_batches_are_aligned_and_reproducible():
    pairs = PairSet(list_images([SET5 / "HR_x2"], exclude=["woman_HR_x2"]), 2, 16)
    assert len(pairs.hr) == 4 and "woman_HR_x2.png" not in pairs.names
    lr, hr = pairs.batch(3, 7, 6, 16)
    lr2, hr2 = pairs.batch(3, 7, 6, 16)
    assert np.array_equal(lr, lr2) and np.array_equal(hr, hr2)          # a pure function of (seed, step)
    assert not np.array_equal(lr, pairs.batch(3, 8, 6, 16)[0])
    # LR patches are the MATLAB-bicubic image of their HR patches (up to the crop border).
    for a, b in zip(lr, hr):
        down = imresize(b.astype(np.uint8), 0.5).astype(np.float32)
        assert np.abs(down[4:-4, 4:-4] - a[4:-4, 4:-4]).mean() < 1.0


def test_resume_gives_the_same_weights(tmp_path):
    common = ["--data", str(SET5 / "HR_x2"), "--scale", "2", "--config",
              '{"n_resgroups": 1, "n_resblocks": 2, "n_feats": 8, "reduction": 2}', "--steps", "6",
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
    # A checkpoint from another schedule is refused rather than silently mixed.
    with pytest.raises(ValueError, match="--steps 6"):
        other = [("9" if a == "6" else a) for a in common]   # --steps 9
        main(other + ["--out", str(tmp_path / "x.safetensors"), "--checkpoint", str(ckpt)])
