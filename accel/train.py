"""Train an RCAN with optax: L1 loss, Adam, warm-up + cosine learning rate, exact resume.

Example (the shipped compact model; resumable at any checkpoint):
    python -m accel.train --data ../shared/data/train/T91 ../shared/data/train/BSD200 \
        --exclude 302003 --scale 2 --preset compact --steps 6000 \
        --out accel/weights/rcan_compact_x2.safetensors --checkpoint runs/compact.ckpt \
        --val-hr tests/data/Set5/HR_x2

The checkpoint holds the parameters, the optimizer state and the step; the batch of each step is a
pure function of (seed, step), so a run stopped and resumed ends with the same weights as one that
never stopped. Blocks are unrolled: on XLA CPU, gradients through lax.scan are ~40× slower.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from safetensors.numpy import load_file, save_file

from reference.config import PRESETS, RCANConfig
from reference.metrics import imresize, modcrop, psnr
from reference.weights import atomic_write, init_weights, save_weights

from .api import model_from_weights, model_weights
from .data import PairSet, Prefetcher, list_images, read_rgb


def make_schedule(peak_lr: float, steps: int, warmup: int):
    warmup = min(warmup, max(steps - 1, 1))
    return optax.warmup_cosine_decay_schedule(0.0, peak_lr, warmup, max(steps, warmup + 1), peak_lr * 0.01)


class Trainer:
    def __init__(self, config: RCANConfig, seed=0, peak_lr=5e-4, steps=1000, warmup=200):
        self.config, self.seed, self.steps = config, seed, steps
        model = model_from_weights(init_weights(config, seed), config, layout="unrolled")
        self.graphdef, self.params = nnx.split(model, nnx.Param)
        self.tx = optax.adam(make_schedule(peak_lr, steps, warmup))
        self.opt_state = self.tx.init(self.params)
        self.step = 0
        graphdef, tx = self.graphdef, self.tx

        def loss_fn(params, lr, hr):
            sr = nnx.merge(graphdef, params)(lr)
            return jnp.mean(jnp.abs(sr - hr))                       # L1 in 0..255, as the paper

        @jax.jit
        def train_step(params, opt_state, lr, hr):
            loss, grads = jax.value_and_grad(loss_fn)(params, lr, hr)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        @jax.jit
        def predict(params, lr):
            return nnx.merge(graphdef, params)(lr)

        self._train_step, self._predict = train_step, predict

    def train_step(self, lr, hr) -> float:
        self.params, self.opt_state, loss = self._train_step(self.params, self.opt_state, lr, hr)
        self.step += 1
        return float(loss)

    def set_weights(self, weights: dict):
        model = model_from_weights(weights, self.config, layout="unrolled")
        self.params = nnx.state(model, nnx.Param)
        self.opt_state = self.tx.init(self.params)

    def weights(self) -> dict:
        return model_weights(nnx.merge(self.graphdef, self.params))

    def super_resolve(self, lr_uint8: np.ndarray) -> np.ndarray:
        """One image, quantized like the official code (clamp, round half to even)."""
        sr = self._predict(self.params, jnp.asarray(lr_uint8[None], jnp.float32))[0]
        return np.asarray(jnp.round(jnp.clip(sr, 0, 255))).astype(np.uint8)

    # -- checkpoints: every leaf of (params, opt_state) by its tree path, plus the step ------------
    def _leaves(self):
        flat, _ = jax.tree_util.tree_flatten_with_path((self.params, self.opt_state))
        return {jax.tree_util.keystr(path): leaf for path, leaf in flat}

    def save_checkpoint(self, path, extra: dict | None = None):
        tensors = {k: np.asarray(v) for k, v in self._leaves().items()}
        meta = {"step": str(self.step), "config": self.config.to_json(), "seed": str(self.seed),
                "steps": str(self.steps), **{k: str(v) for k, v in (extra or {}).items()}}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))

    def load_checkpoint(self, path):
        from reference.weights import read_metadata
        meta = read_metadata(path)
        if RCANConfig.from_json(meta["config"]) != self.config:
            raise ValueError(f"{path}: checkpoint is for {meta['config']}, not {self.config.to_json()}")
        if int(meta["steps"]) != self.steps or int(meta["seed"]) != self.seed:
            raise ValueError(f"{path}: checkpoint was made with --steps {meta['steps']} --seed {meta['seed']}; "
                             "resume with the same values (the schedule and batches depend on them)")
        stored = load_file(path)
        flat, treedef = jax.tree_util.tree_flatten_with_path((self.params, self.opt_state))
        leaves = []
        for p, leaf in flat:
            value = stored[jax.tree_util.keystr(p)]
            leaves.append(jnp.asarray(value, dtype=jnp.asarray(leaf).dtype))
        self.params, self.opt_state = jax.tree_util.tree_unflatten(treedef, leaves)
        self.step = int(meta["step"])
        return meta


def validate(trainer: Trainer, hr_images: list[tuple[str, np.ndarray]], scale: int) -> float:
    """Mean PSNR on Y (official protocol) over the validation HR images."""
    scores = []
    for _, hr in hr_images:
        hr = modcrop(hr, scale)
        scores.append(psnr(hr, trainer.super_resolve(imresize(hr, 1 / scale)), scale))
    return float(np.mean(scores))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m accel.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="folders (or files) of HR training images")
    ap.add_argument("--exclude", nargs="*", default=[], help="image stems or names to leave out (e.g. 302003)")
    ap.add_argument("--scale", type=int, default=2, help="upscaling factor (2, 3, 4, 8)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="compact", help="model size preset")
    ap.add_argument("--config", help="RCANConfig as JSON (overrides --preset), e.g. '{\"n_resgroups\": 2}'")
    ap.add_argument("--steps", type=int, required=True, help="total optimizer steps (fixes the schedule)")
    ap.add_argument("--batch", type=int, default=16, help="patches per step")
    ap.add_argument("--patch", type=int, default=48, help="LR patch size in pixels")
    ap.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (Adam)")
    ap.add_argument("--warmup", type=int, default=200, help="linear warm-up steps")
    ap.add_argument("--seed", type=int, default=0, help="seed of the initial weights and of every batch")
    ap.add_argument("--out", required=True, help="canonical .safetensors written at the end (and at checkpoints)")
    ap.add_argument("--checkpoint", help="training checkpoint path, written every --every steps")
    ap.add_argument("--resume", help="checkpoint to resume from (default: --checkpoint if it exists)")
    ap.add_argument("--init", help="start from these weights (canonical file) with a fresh optimizer and schedule "
                                   "(to train a shipped model further)")
    ap.add_argument("--every", type=int, default=250, help="steps between checkpoints and validations")
    ap.add_argument("--val-hr", help="folder of HR images for validation PSNR (e.g. Set5)")
    ap.add_argument("--stop-after", type=int, help="stop after this many steps of this run (for testing resume)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    config = PRESETS[args.preset](args.scale)
    if args.config:
        fields = {**json.loads(config.to_json()), **json.loads(args.config), "scale": args.scale}
        config = RCANConfig(**fields)
    paths = list_images(args.data, args.exclude)
    t0 = time.time()
    pairs = PairSet(paths, args.scale, args.patch)
    print(f"{len(pairs.hr)} training images ({time.time() - t0:.1f} s to prepare LR); config {config.to_json()}",
          file=sys.stderr)
    val = [(p.name, read_rgb(p)) for p in list_images([args.val_hr])] if args.val_hr else []

    trainer = Trainer(config, args.seed, args.lr, args.steps, args.warmup)
    if args.init and not (args.resume or (args.checkpoint and Path(args.checkpoint).is_file())):
        from reference.weights import load_weights
        init, init_config = load_weights(args.init)
        if init_config != config:
            raise SystemExit(f"error: {args.init}: weights are {init_config.to_json()}, not {config.to_json()}")
        trainer.set_weights(init)
    resume = args.resume or (args.checkpoint if args.checkpoint and Path(args.checkpoint).is_file() else None)
    elapsed = 0.0
    if resume:
        meta = trainer.load_checkpoint(resume)
        elapsed = float(meta.get("train_seconds", 0))
        print(f"resumed from {resume} at step {trainer.step}", file=sys.stderr)
    stop = args.steps if args.stop_after is None else min(args.steps, trainer.step + args.stop_after)

    from tqdm import tqdm
    bar = tqdm(total=args.steps, initial=trainer.step, disable=args.quiet, file=sys.stderr, dynamic_ncols=True)
    batches = Prefetcher(pairs, args.seed, trainer.step, stop, args.batch, args.patch)
    history, val_psnr, t_run = [], float("nan"), time.time()
    nparams = sum(v.size for v in trainer.weights().values())

    def save(final=False):
        nonlocal elapsed, t_run
        elapsed += time.time() - t_run
        t_run = time.time()
        extra = {"train_seconds": f"{elapsed:.1f}", "val_psnr": f"{val_psnr:.4f}"}
        if args.checkpoint:
            trainer.save_checkpoint(args.checkpoint, extra)
        save_weights(args.out, trainer.weights(), config, source_name="accel.train", steps=trainer.step,
                     train_seconds=f"{elapsed:.1f}", batch=args.batch, patch=args.patch, peak_lr=args.lr,
                     seed=args.seed, data=" ".join(str(d) for d in args.data), exclude=" ".join(args.exclude),
                     n_train_images=len(pairs.hr), val_psnr=f"{val_psnr:.4f}", parameters=nparams)

    while trainer.step < stop:
        step, (lr, hr) = next(batches)
        assert step == trainer.step, (step, trainer.step)
        loss = trainer.train_step(lr, hr)
        if not math.isfinite(loss):
            raise SystemExit(f"error: loss is {loss} at step {trainer.step}; lower --lr")
        history.append(loss)
        if trainer.step % args.every == 0 or trainer.step == stop:
            if val:
                val_psnr = validate(trainer, val, args.scale)
            save()
        bar.set_postfix(loss=f"{np.mean(history[-50:]):.3f}", val_psnr=f"{val_psnr:.2f}")
        bar.update(1)
    bar.close()
    print(json.dumps({"step": trainer.step, "loss": float(np.mean(history[-50:])) if history else None,
                      "val_psnr": val_psnr, "train_seconds": round(elapsed, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
