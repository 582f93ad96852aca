"""Many images at the speed of one compiled shape: every image is cut into tiles of one size, tiles of
different images share each batch, and decoding and encoding run on worker threads beside the model.

Per-image processing pads each image to its own shape, so a folder of photos of different sizes
compiles (and, on a CPU, times the convolution paths for) nearly one program per photo. Here every
call is [BATCH, FOLDER_TILE, FOLDER_TILE, 3] with a mask (the last row and column of tiles, and images
smaller than a tile, are zero-padded; the mask makes the padding exact), so a whole folder compiles exactly one
shape, known before the first image. The tiles go through the same Runner as a single image
(accel/run/runner.py), overlap by OVERLAP pixels and are blended with linear ramps: the output differs
from a whole-image run only through channel attention, which pools over what each tile sees
(tests/test_folder.py: ≥ 50 dB PSNR against whole-image outputs). A bounded queue keeps at most a few
decoded images ahead of the model, so memory stays flat however large the folder.
"""
from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from reference.support import cli

from .images import Decoded, ImageError, decode
from .runner import Runner
from .tiles import BATCH, FOLDER_TILE, OVERLAP, Canvas, Plan

AHEAD = 3                           # decoded images waiting for the model, at most


@dataclasses.dataclass
class Item:
    """One image on its way through: its job (whatever the caller passes), decoded input, output canvas."""
    job: object
    image: object = None          # the opened PIL image
    decoded: Decoded | None = None
    canvas: Canvas | None = None
    seconds: float = 0.0          # model time spent on its tiles
    error: Exception | None = None
    single: bool = False          # animated or multi-page: for the caller's per-image path
    result: dict | None = None     # what the caller's finish() recorded


def plan(tile: int = FOLDER_TILE, overlap: int = OVERLAP, batch: int = BATCH) -> Plan:
    """A folder's plan: fixed tiles, several per call."""
    return Plan(tile, overlap, batch, fixed=True)


def shapes(tile: int = FOLDER_TILE, batch: int = BATCH) -> list[tuple[int, int, int, int]]:
    """Every input shape a folder run compiles: one."""
    return [plan(tile, batch=batch).call_shape((tile, tile))[0]]


def warm_up(model, tile: int = FOLDER_TILE, batch: int = BATCH) -> float:
    """Compile (and on a CPU, time the convolution paths for) the folder's one shape before the first
    image, so the images' own times are compute alone; returns the seconds it took."""
    t0 = time.perf_counter()
    Runner(model, plan(tile, batch=batch)).upscale(np.zeros((tile, tile, 3), np.float32))
    return time.perf_counter() - t0


def _decode_all(jobs, open_job, out: queue.Queue, stop: threading.Event):
    """Worker: open and decode each job's image (or record why not), a bounded number ahead."""
    for job in jobs:
        if stop.is_set():
            break
        item = Item(job)
        try:
            item.image = open_job(job)
            if getattr(item.image, "n_frames", 1) > 1:
                item.single = True
            else:
                item.decoded = decode(item.image)
        except (ImageError, OSError) as e:
            item.error = e
        out.put(item)
    out.put(None)


def run(jobs, model, open_job, finish, tile: int = FOLDER_TILE, overlap: int = OVERLAP, batch: int = BATCH):
    """Upscale every job's image, tiles of several images per call. open_job(job) -> PIL image;
    finish(item, sr) -> None runs on a worker thread with the output (float32 [sH, sW, 3]) and may raise
    ImageError/OSError. Yields each Item as it is done (item.error set on failure; item.single for
    animated or multi-page images, which the caller runs itself)."""
    runner = Runner(model, plan(tile, overlap, batch))
    decoded: queue.Queue = queue.Queue(maxsize=AHEAD)
    stop = threading.Event()
    reader = threading.Thread(target=_decode_all, args=(jobs, open_job, decoded, stop), daemon=True)
    reader.start()
    writer = ThreadPoolExecutor(max_workers=1)
    writing: deque[tuple[Item, Future]] = deque()
    owner: dict[Canvas, Item] = {}    # each canvas's item
    more = True
    try:
        while more or runner.waiting or writing:
            cli.check_interrupted()
            # Fill a batch: take decoded images while fewer tiles than a batch wait.
            while more and len(runner.waiting) < batch:
                item = decoded.get()
                if item is None:
                    more = False
                elif item.error is not None or item.single:
                    yield item
                else:
                    item.canvas = runner.add(item.decoded.rgb)
                    owner[item.canvas] = item
            if runner.waiting:
                for canvas in runner.step():   # all its tiles are in: encode and write beside the model
                    it = owner.pop(canvas)
                    it.seconds = canvas.seconds
                    writing.append((it, writer.submit(finish, it, canvas.result())))
                    canvas.img = None
            # Hand back what the writer finished; wait for it only when nothing else is left to do.
            while writing and (writing[0][1].done() or not (more or runner.waiting) or len(writing) > AHEAD):
                it, future = writing.popleft()
                try:
                    future.result()
                except (ImageError, OSError) as e:
                    it.error = e
                it.canvas = None
                yield it
    finally:
        stop.set()
        while reader.is_alive():            # let the reader see `stop` (it may be blocked on a full queue)
            try:
                decoded.get_nowait()
            except queue.Empty:
                reader.join(0.05)
        writer.shutdown(wait=True)
