"""Train an RCAN with optax: L1 loss, Adam, warm-up + cosine learning rate, data parallel, exact resume.

Examples:
    # the shipped compact model (6,500 steps on a 2-core CPU)
    python -m accel.train --data train/T91 train/BSD200 --exclude 302003 \\
        --preset compact --steps 6500 --out rcan_compact_x2.safetensors \\
        --checkpoint runs/compact_x2.ckpt --val-hr tests/data/Set5/HR_x2

    # the shipped deep model: whatever devices there are, bfloat16 convolutions, a schedule fitted to 9 minutes
    python -m accel.train --data train/T91 train/BSD200 --exclude 302003 \\
        --preset deep --steps fit --batch 32 --lr 3e-4 --warmup 300 --dtype bfloat16 --time-budget 550 \\
        --out rcan_deep_x2.safetensors --checkpoint deep_x2.ckpt --val-hr tests/data/Set5/HR_x2

The training images and their MATLAB-bicubic LR live on the device (accel/data.py); each step draws
its own aligned crops inside the jitted step, from a key that depends only on (seed, step), so a run
stopped and resumed ends with the same weights as one that never stopped. The batch is split over
every device (a 1-D `data` mesh; weights and optimizer replicated, gradients reduced by XLA).
--steps fixes the schedule of the whole training; --time-budget ends this run early, with a checkpoint
to resume from; --steps fit with --time-budget sizes the schedule to end with the budget. CPU runs unroll
the blocks (on XLA CPU, gradients through lax.scan are ~40× slower); accelerators scan them (fast to
compile). Checkpoints use the official key names, so a checkpoint moves between block loops and machines.

The real-photo models are fine-tunes of the bicubic ones with --degrade real (accel/degrade/chain.py: the LR of
each patch made from its HR crop by a blur/resize/noise/JPEG chain inside the step) and --ema:

    python -m accel.train --data train/T91 train/BSD200 --exclude 302003 $(cat runs/real/holdout.txt) \\
        --preset compact --init accel/weights/rcan_compact_x2.safetensors --degrade real --ema 0.999 \\
        --steps 3000 --lr 2e-4 --warmup 100 --out rcan_real_compact_x2.safetensors --checkpoint real_compact.ckpt
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

try:
    import ml_dtypes
    import optax
except ImportError as e:   # the `train` extra
    raise SystemExit(f"error: training needs {e.name}: pip install 'rcan-threeways[train]'") from None

from reference.config import PRESETS, RCANConfig, known_fields
from reference.metrics import imresize, modcrop, psnr, quantize
from reference.support import cli
from reference.support.files import atomic_write
from reference.weights import init_weights, load_weights, read_metadata, save_weights, stages

from . import options
from .api import model_from_weights
from .data import TrainingImages, list_images, random_crops, read_rgb
from .degrade.chain import CHAINS, degrade_batch
from .model import params
from .platform import distributed, hardware, runtime
from .platform.distributed import is_main, local, put_replicated
from .run.runner import super_resolve

CHECKPOINT_FORMAT = "rcan-train-checkpoint/2"
END_LR = 0.01   # the cosine ends at this fraction of the peak learning rate
UNFITTED = 2**31 - 1   # the schedule length of a --steps fit run until its first steps have been timed
FIT_AFTER_SECONDS, FIT_AFTER_STEPS = 5.0, 200   # steps timed before --steps fit decides the length
REWARM = 100   # steps over which the learning rate comes back after a resume without Adam's moments
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
MOMENTS = ("float32", "bfloat16", "none")
DEGRADATIONS = ("bicubic", *CHAINS)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the weights a training ends with (a resume must match it exactly)."""
    model: RCANConfig
    steps: int               # length of the schedule (the whole training, over as many runs as it takes)
    batch: int = 16          # patches per step, over all devices
    patch: int = 48          # LR patch side in pixels
    peak_lr: float = 5e-4
    warmup: int = 200
    seed: int = 0            # initial weights and every batch
    degradation: str = "bicubic"   # the LR inputs: MATLAB bicubic, or a chain of accel/degrade/chain.py CHAINS
    ema: float = 0.0         # decay of the weights' exponential moving average (0: none); saved weights are it

    def __post_init__(self):
        for name in ("steps", "batch", "patch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.warmup, int) and self.warmup >= 0):
            raise ValueError(f"warmup must be a non-negative integer, got {self.warmup!r}")
        if not (self.peak_lr > 0 and math.isfinite(self.peak_lr)):
            raise ValueError(f"peak_lr must be a positive number, got {self.peak_lr!r}")
        if self.degradation not in DEGRADATIONS:
            raise ValueError(f"degradation must be one of {', '.join(DEGRADATIONS)}, got {self.degradation!r}")
        if self.degradation != "bicubic" and self.patch % 16:
            raise ValueError(f"the real-photo degradations need a patch that is a multiple of 16 (JPEG's "
                             f"macroblocks), got {self.patch}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema!r}")

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "model": json.loads(self.model.to_json())}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        data = known_fields(cls, json.loads(text))
        return cls(**{**data, "model": RCANConfig(**known_fields(RCANConfig, data.get("model", {})))})

    def flops_per_step(self) -> float:
        """Convolution FLOPs of one step: forward + backward ≈ 3 × the forward's 2 FLOPs per multiply-add."""
        return 3 * 2 * self.batch * sum(r["macs"] for r in stages(self.model, self.patch, self.patch))


def learning_rate(tc: TrainConfig, step: int) -> float:
    """The learning rate of a step: linear warm-up from 0 to peak_lr, then a cosine down to 1 % of it at
    tc.steps (optax.warmup_cosine_decay_schedule's curve). Computed here on the host and passed to the
    jitted step, so that the length of the schedule can be decided while training (--steps fit) without
    compiling the step again."""
    warmup = min(tc.warmup, max(tc.steps - 1, 1))
    if step < warmup:
        return tc.peak_lr * step / warmup
    decay = max(tc.steps, warmup + 1) - warmup
    cosine = 0.5 * (1 + math.cos(math.pi * min(step - warmup, decay) / decay))
    return tc.peak_lr * (END_LR + (1 - END_LR) * cosine)


def fitted_steps(step: int, rate: float, seconds: float, save_seconds: float, every: int) -> int:
    """The last step a schedule can reach in `seconds` from `step` at `rate` steps/s, when every
    `every` steps a validation and save of `save_seconds` interrupt the training."""
    return step + max(int(seconds / (1 / rate + save_seconds / every)), 1)


def ema_decay(tc: TrainConfig, step):
    """The EMA's decay at a step: tc.ema, lower over the first steps ((1 + step) / (10 + step)) so that a
    short fine-tune's average is not dominated by the weights it started from."""
    return jnp.minimum(tc.ema, (1.0 + step) / (10.0 + step))


def draw_batch(tc: TrainConfig, data: dict, step):
    """The (lr, hr) batch of a step: aligned crops, then (degradation "real") the real-photo chain applied
    to the HR crops, all on the device, from a key that depends only on (seed, step)."""
    key = jax.random.fold_in(jax.random.key(tc.seed), step)
    lr, hr = random_crops(data, key, tc.batch, tc.patch, tc.model.scale)
    if tc.degradation != "bicubic":
        lr = degrade_batch(jax.random.fold_in(key, 1), lr, hr, tc.model.scale, CHAINS[tc.degradation])
    return lr, hr


def default_loops() -> str:
    return "unrolled" if jax.default_backend() == "cpu" else "scan"


class Trainer:
    """Parameters and Adam state replicated over a 1-D `data` mesh; each step draws its batch on the
    devices, splits it over the mesh and reduces the gradients (XLA inserts the all-reduce)."""

    def __init__(self, tc: TrainConfig, dtype: str = "float32", loops: str | None = None, devices=None):
        self.tc, self.dtype, self.loops = tc, dtype, loops or default_loops()
        self.mesh = Mesh(np.array(devices if devices is not None else jax.devices()), ("data",))
        if tc.batch % self.mesh.size:
            raise ValueError(f"--batch {tc.batch} does not split over {self.mesh.size} devices")
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.split = NamedSharding(self.mesh, PartitionSpec("data"))
        model = model_from_weights(init_weights(tc.model, tc.seed), tc.model, self.loops, DTYPES[dtype])
        self.model_loops = model.loops
        self.graphdef, state = nnx.split(model, nnx.Param)
        self.params = put_replicated(state, self.replicated)
        # Adam, times the step's learning rate (learning_rate, passed in), times a re-warm factor that
        # ramps from 0 to 1 over REWARM steps of its own count: 1 throughout, except after a resume without
        # Adam's moments, whose first steps would otherwise move every weight by the full learning rate at
        # once (bias correction makes them ≈ lr·sign(gradient)): measured, Set5 34.64 → 25.90 dB in one step.
        self.tx = optax.chain(optax.scale_by_adam(),
                              optax.scale_by_schedule(lambda n: jnp.minimum(1.0, (n + 1) / REWARM)))
        self.opt_state = put_replicated(self.tx.init(self.params), self.replicated)
        self.step = 0
        self.data = None
        graphdef, tx, split = self.graphdef, self.tx, self.split

        def loss_fn(p, lr, hr):
            sr = nnx.merge(graphdef, p)(lr)                       # float32 out (add_mean), bf16 convs inside
            return jnp.mean(jnp.abs(sr - hr))                      # L1 in 0..255, as the paper

        def train_step(p, opt_state, ema, data, step, rate):
            lr, hr = draw_batch(tc, data, step)
            lr = jax.lax.with_sharding_constraint(lr, split)
            hr = jax.lax.with_sharding_constraint(hr, split)
            loss, grads = jax.value_and_grad(loss_fn)(p, lr, hr)
            updates, opt_state = tx.update(grads, opt_state, p)
            p = optax.apply_updates(p, jax.tree.map(lambda u: -rate * u, updates))
            if tc.ema:
                decay = ema_decay(tc, step)
                ema = jax.tree.map(lambda e, w: decay * e + (1 - decay) * w, ema, p)
            return p, opt_state, ema, loss

        self._train_step = jax.jit(train_step, donate_argnums=(0, 1, 2))
        self._crops = jax.jit(lambda data, step: draw_batch(tc, data, step))
        self.ema = self._copy(self.params) if tc.ema else None

    def set_data(self, images: TrainingImages):
        """Put the packed training images on every device (replicated: each draws from all of them)."""
        if images.scale != self.tc.model.scale or images.patch != self.tc.patch:
            raise ValueError("training images prepared for another scale or patch size")
        self.data = {k: put_replicated(v, self.replicated) for k, v in images.arrays().items()}

    def train_step(self) -> jax.Array:
        """One optimizer step; returns the loss as a device scalar (reading it waits for the step)."""
        self.params, self.opt_state, self.ema, loss = self._train_step(*self.step_arguments())
        self.step += 1
        return loss

    def step_arguments(self) -> tuple:
        """What the jitted step takes: state, EMA, data, the step number and its learning rate."""
        return (self.params, self.opt_state, self.ema, self.data, np.int32(self.step),
                np.float32(learning_rate(self.tc, self.step)))

    def _copy(self, state):
        return put_replicated(jax.tree.map(jnp.copy, state), self.replicated)

    def batch(self, step: int):
        """The (lr, hr) batch of a step, as the training step draws it."""
        return self._crops(self.data, np.int32(step))

    # -- weights ------------------------------------------------------------------------------------
    def _official(self, state) -> dict[str, np.ndarray]:
        return params.from_pure_dict(local(nnx.to_pure_dict(state)), self.tc.model, self.model_loops)

    def _state(self, weights: dict[str, np.ndarray]):
        tree = params.to_pure_dict(weights, self.tc.model, self.model_loops)
        state = jax.tree.map(lambda x: x, self.params)
        nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, tree))
        return put_replicated(state, self.replicated)

    def weights(self) -> dict[str, np.ndarray]:
        """The weights a training ends with: the EMA's when it keeps one, else the optimizer's."""
        return self._official(self.ema if self.ema is not None else self.params)

    def set_weights(self, weights: dict, step: int = 0, moments=None, ema: dict | None = None):
        """Start from these weights; Adam's moments given (mu, nu) or zero; the EMA given or these weights.
        The schedule continues at step."""
        self.params = self._state(weights)
        if self.tc.ema:
            self.ema = self._state(ema if ema is not None else weights)
        adam, rewarm = self.tx.init(self.params)
        count = np.int32(step if moments is not None else 0)   # zero moments: bias correction starts over
        if moments is not None:
            adam = adam._replace(mu=self._state(moments[0]), nu=self._state(moments[1]))
        rewarmed = np.int32(0 if moments is None and step > 0 else REWARM)   # ramp only after a moment-less resume
        self.opt_state = put_replicated((adam._replace(count=count), rewarm._replace(count=rewarmed)),
                                        self.replicated)
        self.step = step

    # -- checkpoints: official names, so they move between block loops, dtypes and device counts ---------
    def save_checkpoint(self, path, moments: str = "float32", extra: dict | None = None):
        tensors = {f"params/{k}": v for k, v in self._official(self.params).items()}
        if self.ema is not None:
            tensors.update({f"ema/{k}": v for k, v in self._official(self.ema).items()})
        if moments != "none":
            adam = self.opt_state[0]
            for name, state in (("mu", adam.mu), ("nu", adam.nu)):
                for k, v in self._official(state).items():
                    tensors[f"{name}/{k}"] = v if moments == "float32" else v.astype(ml_dtypes.bfloat16).view(np.uint16)
        meta = {"format": CHECKPOINT_FORMAT, "train_config": self.tc.to_json(), "step": str(self.step),
                "moments": moments, "adam_count": str(int(local(self.opt_state[0].count))),
                "rewarm_count": str(int(local(self.opt_state[1].count))),
                **{k: str(v) for k, v in (extra or {}).items()}}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))

    def load_checkpoint(self, path) -> dict:
        meta = read_metadata(path)
        saved = checkpoint_config(path, meta)
        if saved != self.tc:
            diff = {f.name: (getattr(saved, f.name), getattr(self.tc, f.name)) for f in dataclasses.fields(saved)
                    if getattr(saved, f.name) != getattr(self.tc, f.name)}
            hint = ", ".join(f"{k}: checkpoint {a} vs now {b}" for k, (a, b) in diff.items())
            raise ValueError(f"{path}: checkpoint was made with other settings ({hint}); resume with the same "
                             "values (the schedule and batches depend on them)")
        stored = load_file(path)

        def part(name):
            out = {k.split("/", 1)[1]: v for k, v in stored.items() if k.startswith(name + "/")}
            if meta["moments"] == "bfloat16" and name in ("mu", "nu"):
                out = {k: v.view(ml_dtypes.bfloat16).astype(np.float32) for k, v in out.items()}
            return out
        step = int(meta["step"])
        moments = None if meta["moments"] == "none" else (part("mu"), part("nu"))
        self.set_weights(part("params"), step, moments, part("ema") or None)
        if moments is not None:   # the exact counts (Adam's restarts at 0 after a resume without moments)
            adam, rewarm = self.opt_state
            self.opt_state = put_replicated((adam._replace(count=np.int32(int(meta["adam_count"]))),
                                             rewarm._replace(count=np.int32(int(meta.get("rewarm_count", REWARM))))),
                                            self.replicated)
        return meta


def checkpoint_config(path, meta: dict | None = None) -> TrainConfig:
    """The TrainConfig a checkpoint was made with (meta: its metadata, when already read)."""
    meta = read_metadata(path) if meta is None else meta
    if meta.get("format") != CHECKPOINT_FORMAT or "train_config" not in meta:
        raise ValueError(f"{path}: not a training checkpoint of this version ({meta.get('format')!r})")
    return TrainConfig.from_json(meta["train_config"])


def validate(trainer: Trainer, hr_images: list[tuple[str, np.ndarray]], scale: int) -> float:
    """Mean PSNR on Y (official protocol) over the validation HR images."""
    model = model_from_weights(trainer.weights(), trainer.tc.model, "scan")
    scores = []
    for _, hr in hr_images:
        hr = modcrop(hr, scale)
        sr = quantize(super_resolve(model, imresize(hr, 1 / scale).astype(np.float32)))
        scores.append(psnr(hr, sr, scale))
    return float(np.mean(scores))


@dataclasses.dataclass
class RunOptions:
    """How this run goes (none of it changes the weights a step computes, except dtype)."""
    data: list[str]
    out: str
    exclude: tuple[str, ...] = ()
    dtype: str = "float32"
    loops: str | None = None
    checkpoint: str | None = None
    resume: str | None = None
    init: str | None = None
    moments: str = "float32"
    every: int = 250
    val_hr: str | None = None
    stop_after: int | None = None
    time_budget: float | None = None
    quiet: bool = False


def pipeline_seconds(trainer: Trainer, repeats: int = 5) -> float:
    """Seconds per batch of the input pipeline alone (the crops the step draws), after its compile."""
    jax.block_until_ready(trainer.batch(0))
    t0 = time.perf_counter()
    for i in range(repeats):
        jax.block_until_ready(trainer.batch(i))
    return (time.perf_counter() - t0) / repeats


def start(tc: TrainConfig, run: RunOptions, log=print) -> tuple[Trainer, dict]:
    """A Trainer with the training images on its devices, resumed or initialised as the run asks;
    returns it and the resumed checkpoint's metadata (empty for a fresh start)."""
    log = log if is_main() else (lambda message: None)
    t0 = time.time()
    images = TrainingImages(list_images(run.data, run.exclude), tc.model.scale, tc.patch)
    log(f"{len(images)} training images packed in {time.time() - t0:.1f} s "
        f"(hr {images.hr.shape}, {(images.hr.nbytes + images.lr.nbytes) / 1e6:.0f} MB); {tc.to_json()}")
    trainer = Trainer(tc, run.dtype, run.loops)
    trainer.set_data(images)
    checkpoint_exists = run.checkpoint and Path(run.checkpoint).is_file()
    resume = run.resume or (run.checkpoint if checkpoint_exists else None)
    if resume:
        meta = trainer.load_checkpoint(resume)
        log(f"resumed from {resume} at step {trainer.step} (optimizer moments: {meta['moments']})")
        return trainer, meta
    if run.init:
        weights, config = initial_weights(run.init)
        if config != tc.model:
            raise ValueError(f"{run.init}: weights are {config.to_json()}, not {tc.model.to_json()}")
        trainer.set_weights(weights)
    return trainer, {}


def initial_weights(path) -> tuple[dict[str, np.ndarray], RCANConfig]:
    """The weights of a canonical file, or the parameters of a training checkpoint, and their config."""
    meta = read_metadata(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        return load_weights(path)
    return ({k.split("/", 1)[1]: v for k, v in load_file(path).items() if k.startswith("params/")},
            checkpoint_config(path, meta).model)


def train(tc: TrainConfig, run: RunOptions, log=print) -> dict:
    """Train as the run asks; under jax.distributed every process calls this, process 0 writes."""
    t_start = time.time()
    log = log if is_main() else (lambda message: None)
    fitting = tc.steps == UNFITTED   # --steps fit: the schedule ends where the time budget does
    if fitting and run.time_budget is None:
        raise ValueError("a schedule fitted to the time budget needs a time budget")
    trainer, meta = start(tc, run, log)
    n_images = int(trainer.data["lr_size"].shape[0])
    val = [(p.name, read_rgb(p)) for p in list_images([run.val_hr])] if run.val_hr else []
    elapsed, val_psnr = float(meta.get("train_seconds", 0)), float(meta.get("val_psnr", "nan"))
    stop = tc.steps if run.stop_after is None else min(tc.steps, trainer.step + run.stop_after)
    nparams = sum(v.size for v in trainer.weights().values())
    devices = trainer.mesh.devices.flat
    peak = sum(hardware.peak_tflops(d, run.dtype) or math.nan for d in devices) * 1e12
    log(f"{nparams:,} parameters; {trainer.mesh.size} × {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"{run.dtype}, loops {trainer.loops}; {tc.flops_per_step() / 1e9:.1f} GFLOP per step")

    machine = (f"{trainer.mesh.size} × {jax.devices()[0].device_kind}" if jax.default_backend() != "cpu"
               else f"{hardware.describe_cpu()} (CPU only)")

    def save():
        nonlocal elapsed, t_mark
        elapsed += time.time() - t_mark
        t_mark = time.time()
        extra = {"train_seconds": f"{elapsed:.1f}", "val_psnr": f"{val_psnr:.4f}"}
        if not is_main():   # one writer; the others hold the same replicated weights
            return
        if run.checkpoint:
            trainer.save_checkpoint(run.checkpoint, run.moments, extra)
        save_weights(run.out, trainer.weights(), tc.model, source_name="accel.train", steps=trainer.step,
                     train_seconds=f"{elapsed:.1f}", train_config=tc.to_json(), dtype=run.dtype,
                     data=" ".join(Path(d).name for d in run.data), exclude=" ".join(run.exclude),
                     n_train_images=n_images, val_psnr=f"{val_psnr:.4f}", parameters=nparams,
                     machine=machine)

    bar = tqdm(total=tc.steps, initial=trainer.step, disable=run.quiet or not is_main(), file=sys.stderr,
               dynamic_ncols=True)
    history, t_mark = [], time.time()
    timed_s, timed_n, reserve, crop_s = 0.0, 0, 0.0, float("nan")   # steps after the first (which compiles)
    try:
        while trainer.step < stop:
            cli.check_interrupted()
            t0 = time.time()
            loss = float(local(trainer.train_step()))
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at step {trainer.step}; lower --lr")
            history.append(loss)
            if len(history) == 1:
                crop_s = pipeline_seconds(trainer)
                log(f"first step (compile) {time.time() - t0:.1f} s; input pipeline {1e3 * crop_s:.2f} ms per batch")
                if run.time_budget is not None and val:   # what the final validation will cost
                    log(f"step {trainer.step}: Set5 {validate(trainer, val, tc.model.scale):.2f} dB")
                    t0 = time.time()   # again, compiled: the cost of each later one
                    validate(trainer, val, tc.model.scale)
                    reserve = time.time() - t0
            else:
                timed_s, timed_n = timed_s + time.time() - t0, timed_n + 1
            rate = timed_n / timed_s if timed_n else float("nan")
            if fitting and (timed_s >= FIT_AFTER_SECONDS or timed_n >= FIT_AFTER_STEPS):
                # Fit the schedule into what is left of the budget at the measured rate (the learning rate
                # of the steps so far, in the warm-up, does not depend on it), leaving the final
                # validation and save their time and a margin of two steps and a second.
                left = run.time_budget - (time.time() - t_start) - max(reserve, 1.0) - 2 / rate - 1.0
                steps = fitted_steps(trainer.step, rate, left, reserve + 0.5, run.every)
                tc = trainer.tc = dataclasses.replace(tc, steps=max(steps, tc.warmup + 1))
                stop = bar.total = tc.steps
                fitting = False
                log(f"schedule fitted to the time budget: {tc.steps} steps at {rate:.2f} steps/s")
            if trainer.step % run.every == 0 or trainer.step == stop:
                t0 = time.time()
                if val:
                    val_psnr = validate(trainer, val, tc.model.scale)
                save()
                reserve = max(reserve, time.time() - t0)
            status = (f"loss {np.mean(history[-50:]):.3f} | {rate:.2f} steps/s {rate * tc.batch:.0f} patches/s "
                      f"{100 * rate * tc.flops_per_step() / peak:.0f}% peak | Set5 {val_psnr:.2f}")
            bar.set_postfix_str(status, refresh=False)
            if run.quiet and trainer.step % run.every == 0:
                log(f"step {trainer.step}: {status}")
            bar.update(1)
            if run.time_budget is not None and trainer.step < stop:
                # Stop while one more step, the final validation and the save still fit in the budget.
                if time.time() - t_start + (1 / rate if timed_n else 0) + max(reserve, 1.0) > run.time_budget:
                    if val:
                        val_psnr = validate(trainer, val, tc.model.scale)
                    save()
                    break
    except cli.Interrupted:   # SIGINT/SIGTERM/SIGHUP: keep what was trained, then stop as asked
        save()
        raise
    bar.close()
    rate = timed_n / timed_s if timed_n else float("nan")
    return {"step": trainer.step, "schedule_steps": tc.steps,
            "loss": float(np.mean(history[-50:])) if history else None, "val_psnr": val_psnr,
            "train_seconds": round(elapsed, 1), "run_seconds": round(time.time() - t_start, 1),
            "patches_per_s": round(rate * tc.batch, 2), "share_of_peak": round(rate * tc.flops_per_step() / peak, 4),
            "step_ms": round(1e3 / rate, 2), "pipeline_ms": round(1e3 * crop_s, 3),
            "devices": trainer.mesh.size, "device_kind": jax.devices()[0].device_kind, "dtype": run.dtype}


def steps_option(text: str) -> int | str:
    if text == "fit":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of steps or 'fit', got {text!r}") from None


def parser():
    ap = cli.parser("python -m accel.train", __doc__)
    ap.add_argument("--data", nargs="+", required=True, help="folders (or files) of HR training images")
    ap.add_argument("--exclude", nargs="*", default=[], help="image stems or names to leave out (e.g. 302003)")
    options.scale(ap, help="upscaling factor (default 2)")
    ap.add_argument("--preset", choices=sorted(PRESETS), help="model size preset (default compact)")
    ap.add_argument("--config", help="RCANConfig fields as JSON over the preset, e.g. '{\"n_resgroups\": 2}'")
    ap.add_argument("--steps", type=steps_option,
                    help="total optimizer steps (fixes the schedule); 'fit': as many as --time-budget holds, "
                         "measured on the first steps; a resume without any model or schedule option takes "
                         "them all from the checkpoint")
    ap.add_argument("--batch", type=int, help="patches per step, over all devices (default 16)")
    ap.add_argument("--patch", type=int, help="LR patch size in pixels (default 48)")
    ap.add_argument("--lr", type=float, help="peak learning rate of Adam (default 5e-4)")
    ap.add_argument("--warmup", type=int, help="linear warm-up steps (default 200)")
    ap.add_argument("--seed", type=int, help="seed of the initial weights and of every batch (default 0)")
    ap.add_argument("--degrade", choices=DEGRADATIONS,
                    help="LR inputs: MATLAB bicubic (default), or a chain of accel/degrade/chain.py on the device: "
                         "real (blur, resize, noise, JPEG, twice), photo (milder: mostly once) or mild (one blur, "
                         "shrink, noise, JPEG, as phones and the web)")
    ap.add_argument("--ema", type=float, help="decay of an EMA of the weights, which is what is saved (e.g. 0.999; "
                                              "default 0: none)")
    options.dtype(ap, auto=False,
                    help="convolution precision; weights, optimizer and loss stay float32")
    ap.add_argument("--loops", choices=["unrolled", "scan", "mixed"],
                    help="block loops (default: unrolled on CPU, scan on accelerators)")
    ap.add_argument("--out", required=True, help="canonical .safetensors written at the end (and at checkpoints)")
    ap.add_argument("--checkpoint", help="training checkpoint path, written every --every steps")
    ap.add_argument("--resume", help="checkpoint to resume from (default: --checkpoint if it exists)")
    ap.add_argument("--moments", choices=MOMENTS, default="float32",
                    help="how the checkpoint stores Adam's moments (bfloat16 halves them; none: a resume "
                         "restarts them, for a small checkpoint)")
    ap.add_argument("--init", help="start from these weights (a canonical file, or a training checkpoint's) with "
                                   "a fresh optimizer and schedule")
    ap.add_argument("--every", type=int, default=250, help="steps between checkpoints and validations")
    ap.add_argument("--val-hr", help="folder of HR images for validation PSNR (e.g. Set5)")
    ap.add_argument("--stop-after", type=int, help="stop after this many steps of this run")
    ap.add_argument("--time-budget", type=float, help="seconds for this whole run (data, compile, training, the "
                                                       "final validation and save); stops early with a checkpoint")
    options.quiet(ap)
    distributed.add_options(ap)
    return ap


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    distributed.initialize(ap, args)
    # The compilation cache, but not the malloc hand-back: training reuses its large buffers from the heap.
    runtime.configure_from_env(malloc=False)

    schedule = ("scale", "preset", "config", "steps", "batch", "patch", "lr", "warmup", "seed", "degrade", "ema")
    resume = args.resume or (args.checkpoint if args.checkpoint and Path(args.checkpoint).is_file() else None)
    try:
        if resume and all(getattr(args, k) is None for k in schedule):
            tc = checkpoint_config(resume)
        elif args.steps is None:
            ap.error("--steps is required (unless resuming with the checkpoint's own settings)")
        else:
            scale = args.scale or 2
            model = PRESETS[args.preset or "compact"](scale)
            if args.config:
                model = RCANConfig(**{**json.loads(model.to_json()), **json.loads(args.config), "scale": scale})
            given = {k: getattr(args, a) for k, a in (("batch", "batch"), ("patch", "patch"), ("peak_lr", "lr"),
                                                       ("warmup", "warmup"), ("seed", "seed"),
                                                       ("degradation", "degrade"), ("ema", "ema"))
                     if getattr(args, a) is not None}
            if args.steps == "fit" and (args.time_budget is None or resume):
                ap.error("--steps fit needs --time-budget and starts a new schedule (--init takes the weights "
                         "of a checkpoint; --resume continues the steps a checkpoint fixed)")
            tc = TrainConfig(model, UNFITTED if args.steps == "fit" else args.steps, **given)
        run = RunOptions(args.data, args.out, tuple(args.exclude), args.dtype, args.loops, args.checkpoint,
                         args.resume, args.init, args.moments, args.every, args.val_hr, args.stop_after,
                         args.time_budget, args.quiet)
        result = train(tc, run, log=lambda m: print(m, file=sys.stderr))
    except (ValueError, OSError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else 1
    print(json.dumps(result))
    return 0


entry = cli.entry(main)   # the console script

if __name__ == "__main__":
    sys.exit(cli.run(main))
