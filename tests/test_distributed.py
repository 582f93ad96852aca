"""Several processes as one JAX cluster (jax.distributed over 127.0.0.1, CPU collectives through gloo):
training, upscaling and evaluation give what one process gives. Every run has a time limit, and all its
processes are killed if one fails or the limit passes."""
import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import SET5
from PIL import Image

from reference import RCANConfig
from reference.weights import init_weights, load_weights, save_weights

TINY = RCANConfig(scale=2, n_resgroups=1, n_resblocks=1, n_feats=8, reduction=2)
TINY_JSON = '{"n_resgroups": 1, "n_resblocks": 1, "n_feats": 8, "reduction": 2}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cluster(module: str, args: list[str], n: int = 2, timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """python -m module args, as n processes of one cluster; every process ends within the time limit."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-m", module, *args, "--coordinator", f"127.0.0.1:{port}",
                               "--num-processes", str(n), "--process-id", str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n)]
    deadline, results = time.time() + timeout, []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1, deadline - time.time()))
            results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:   # past the limit (a process waiting for a dead peer): kill them all
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def run_one(module: str, args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout)


def test_training_over_two_processes_equals_one(tmp_path):
    common = ["--data", str(SET5 / "HR_x2"), "--config", TINY_JSON, "--steps", "3", "--batch", "4", "--patch", "16",
              "--warmup", "1", "--every", "3", "--quiet", "--lr", "1e-3"]
    t = time.time()
    results = run_cluster("accel.train", common + ["--out", str(tmp_path / "two.safetensors")])
    cluster_seconds = time.time() - t
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-1500:] for r in results]
    one = run_one("accel.train", common + ["--out", str(tmp_path / "one.safetensors")])
    assert one.returncode == 0, one.stderr[-1500:]
    a, ca = load_weights(tmp_path / "one.safetensors")
    b, cb = load_weights(tmp_path / "two.safetensors")
    assert ca == cb == TINY
    diff = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    # The same global batch (drawn on the devices from the same key), split in two: only the order of the
    # gradient sums differs (per-process partial sums, then gloo's all-reduce). Three Adam steps move each
    # weight by ≤ 3e-3; a flipped sign of a near-zero gradient could move one by up to 2·lr.
    assert diff < 2e-3, diff
    losses = [json.loads(r.stdout.strip().splitlines()[-1])["loss"] for r in (results[0], one)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    print(f"2-process training: max |weight difference| {diff:.2e}, losses {losses}, {cluster_seconds:.1f} s")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(path, init_weights(TINY, 0), TINY)
    return str(path)


def test_upscaling_a_folder_over_two_processes_equals_one(tmp_path, tiny):
    src = tmp_path / "in"
    big = Image.open(SET5 / "HR_x2" / "bird_HR_x2.png").convert("RGB")
    for i, (w, h) in enumerate([(40, 30), (24, 36), (64, 20), (30, 30), (50, 44)]):
        (src / f"s{i % 2}").mkdir(parents=True, exist_ok=True)
        big.crop((i * 10, 0, i * 10 + w, h)).save(src / f"s{i % 2}" / f"img{i}.png")
    results = run_cluster("accel.upscale", [str(src), "-o", str(tmp_path / "two"), "--weights", tiny, "--json",
                                            "--conv", "xla"])
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-1500:] for r in results]
    rows = [json.loads(line) for r in results for line in r.stdout.splitlines()]
    assert sorted(r["input"] for r in rows) == sorted(str(p) for p in src.rglob("*.png"))   # each once
    assert all(len(r.stdout.splitlines()) >= 2 for r in results)                      # both did work
    assert "5 images over 2 processes: 5 done or skipped, 0 failed" in results[0].stderr
    one = run_one("accel.upscale", [str(src), "-o", str(tmp_path / "one"), "--weights", tiny, "--quiet",
                                    "--conv", "xla"])
    assert one.returncode == 0, one.stderr
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert files == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.png"))
    for f in files:
        assert np.array_equal(np.asarray(Image.open(tmp_path / "one" / f)), np.asarray(Image.open(tmp_path / "two" / f)))
    # A failure in one process is every process's exit status.
    (src / "s0" / "broken.png").write_bytes(b"not a png")
    results = run_cluster("accel.upscale", [str(src), "-o", str(tmp_path / "three"), "--weights", tiny, "--quiet"])
    assert [r.returncode for r in results] == [1, 1], [r.stderr[-800:] for r in results]


def test_evaluation_over_two_processes_equals_one(tiny):
    # One convolution path for every process: left to autotune, a busy machine could let two processes
    # time different winners, whose sums differ in the last bits.
    args = ["--hr", str(SET5 / "HR_x2"), "--scale", "2", "--weights", tiny, "--json", "--quiet", "--conv", "xla"]
    results = run_cluster("accel.evaluate", args)
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-1500:] for r in results]
    assert results[1].stdout == ""                                   # process 0 prints, once
    two = json.loads(results[0].stdout)
    one = json.loads(run_one("accel.evaluate", args).stdout)
    assert two == one, (two["mean"], one["mean"])
