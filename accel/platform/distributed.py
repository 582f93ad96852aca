"""Several processes, on one machine or many, as one JAX cluster (jax.distributed), and how the CLIs
share work between them.

- accel.train: one global mesh over every device of every process; the batch is split over it and
  the gradients are reduced by the jitted step; process 0 writes the checkpoint and weights, every
  process reads them.
- accel.upscale / accel.evaluate: the files are split between processes (balanced by pixel count,
  the same split in every process); each process runs its share on its own devices; the results
  (failures, scores) are gathered and process 0 reports them.

Without --coordinator/--num-processes/--process-id, a cluster the environment announces (SLURM with
several tasks, Open MPI, a Cloud TPU pod slice) is joined through jax.distributed.initialize()'s own
detection; otherwise the run is one process, as always.
"""
from __future__ import annotations

import os
import sys

import jax
import numpy as np


def add_options(ap) -> None:
    group = ap.add_argument_group("several processes (jax.distributed)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0's coordination service")
    group.add_argument("--num-processes", type=int, help="how many processes take part")
    group.add_argument("--process-id", type=int, help="this process's index, 0 .. num-processes - 1")


def _cluster_announced() -> bool:
    env = os.environ
    return (int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in env
            or int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1
            or "," in env.get("TPU_WORKER_HOSTNAMES", ""))


def initialize(ap, args) -> None:
    """Join the cluster the options (or the environment) describe; nothing for a single process."""
    given = [args.coordinator, args.num_processes, args.process_id]
    if any(v is not None for v in given):
        if any(v is None for v in given):
            ap.error("--coordinator, --num-processes and --process-id go together")
        if not 0 <= args.process_id < args.num_processes:
            ap.error(f"--process-id must be in 0 .. {args.num_processes - 1}")
    elif not _cluster_announced():
        return
    # CPU processes exchange gradients through gloo (GPUs and TPUs use their own collectives).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    _keep_stdout_for_python()
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)


def _keep_stdout_for_python() -> None:
    """The collectives' C++ libraries print to file descriptor 1; the CLIs' stdout is for results
    (--json): Python's stdout keeps the real one, descriptor 1 then goes to stderr."""
    sys.stdout.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(real, "w", buffering=1)


def is_main() -> bool:
    return jax.process_index() == 0


def share(items: list, weights: list[float]) -> list:
    """This process's part of items: the heaviest first, each to the least-loaded process (ties to the
    lowest index), so every process computes the same split; the part keeps the items' order."""
    n = jax.process_count()
    if n == 1:
        return list(items)
    load, owner = [0.0] * n, [0] * len(items)
    for i in sorted(range(len(items)), key=lambda i: (-weights[i], i)):
        owner[i] = min(range(n), key=lambda p: (load[p], p))
        load[owner[i]] += weights[i]
    return [item for item, p in zip(items, owner) if p == jax.process_index()]


def gather(values: np.ndarray) -> np.ndarray:
    """Every process's 1-D values, concatenated in process order (lengths may differ)."""
    if jax.process_count() == 1:
        return np.asarray(values)
    from jax.experimental import multihost_utils
    values = np.asarray(values, np.float64)
    sizes = multihost_utils.process_allgather(np.array([values.size], np.int32)).ravel()
    padded = np.zeros(int(sizes.max()), np.float64)
    padded[:values.size] = values
    # As pairs of 32-bit words: JAX (without x64) would round float64 to float32 on the way.
    every = multihost_utils.process_allgather(padded.view(np.uint32)).reshape(len(sizes), -1)
    return np.concatenate([row.view(np.float64)[:k] for row, k in zip(every, sizes)])


def put_replicated(tree, sharding):
    """Host values (or local arrays) as arrays replicated over a mesh that may span processes (every
    process holds the same values and provides its own devices' copies)."""
    def put(leaf):
        if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
            return leaf
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return jax.tree.map(put, tree)


def local(tree):
    """A tree of replicated arrays as this process's NumPy copies (no communication)."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)) if isinstance(a, jax.Array) else a, tree)
