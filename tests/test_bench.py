"""pytest-benchmark: the same weights and input through the reference, accel and torch.

Disabled by default (each runs once as a check); to time them:
    python -m pytest tests/test_bench.py --benchmark-enable --benchmark-group-by=param:model
The CLI `python -m accel.bench` prints the same comparison as a table with GFLOP/s and ratios.
"""
import numpy as np
import pytest
import torch

import accel
import reference
from reference import RCANConfig, init_weights
from tools import torch_rcan

MODELS = {"official": RCANConfig.official(2), "compact": RCANConfig.compact(2)}


@pytest.fixture(scope="module", params=sorted(MODELS))
def setup(request):
    config = MODELS[request.param]
    weights = init_weights(config, 0)
    lr = np.random.default_rng(0).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    return request.param, config, weights, lr


def test_bench_reference(benchmark, setup):
    model, config, weights, lr = setup
    out = benchmark(reference.forward, weights, config, lr)
    assert out.shape == (128, 128, 3)


def test_bench_accel(benchmark, setup):
    model, config, weights, lr = setup
    m = accel.model_from_weights(weights, config)
    x = lr[None]
    accel.forward(m, x).block_until_ready()   # compile outside the timing
    out = benchmark(lambda: accel.forward(m, x).block_until_ready())
    assert out.shape == (1, 128, 128, 3)


def test_bench_torch_channels_last(benchmark, setup):
    model, config, weights, lr = setup
    torch.set_num_threads(2)
    net = torch_rcan.from_weights(weights, config).to(memory_format=torch.channels_last)
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].contiguous(memory_format=torch.channels_last)

    def run():
        with torch.inference_mode():
            return net(x)
    assert benchmark(run).shape == (1, 3, 128, 128)


def test_bench_torch_tiles_are_accel_tiles():
    """The 1080p rows run torch through accel's own tiling code (accel.bench._torch_forward standing in for
    accel.forward): the same tiles, ramps and batches, so the output matches accel's tiled output."""
    from accel import bench
    from accel.run import runner
    from accel.run.tiles import Plan
    config = RCANConfig.compact(2)
    weights = init_weights(config, 1)
    img = np.random.default_rng(1).uniform(0, 255, (40, 56, 3)).astype(np.float32)
    m = accel.model_from_weights(weights, config)
    want = runner.super_resolve(m, img, Plan(24, overlap=8, batch=4))
    net = torch_rcan.from_weights(weights, config).to(memory_format=torch.channels_last)
    net.channels_last = True
    forward = bench._torch_forward(net, "cpu", torch.float32)
    got = runner.super_resolve(net, img, Plan(24, overlap=8, batch=4), forward=forward)
    assert got.shape == want.shape == (80, 112, 3)
    assert np.abs(got - want).max() < 1e-3
    # A tile that does not fill its shape would need the mask torch does not take: refused.
    with pytest.raises(ValueError, match="fill the tile"):
        runner.run_batch(net, [img[:20, :20], img[:24, :24]], shape=(24, 24), forward=forward)


def test_bench_cli_pairs_each_impl_with_torch_in_its_precision():
    from accel import bench
    assert bench.parse_size("1080p") == (1080, 1920, True) and bench.parse_size("96") == (96, 96, False)
    assert [bench.precision(i) for i in ("accel", "accel-tf32", "accel-bf16", "torch-nchw")] == \
        ["float32", "tf32", "bfloat16", "float32"]
    row = {"impl": "accel-bf16", "device": "gpu", "device_name": "NVIDIA H200", "gflops": 98940.0}
    assert bench.share_of_peak(row, None) == pytest.approx(0.1)
    assert bench.share_of_peak(dict(row, device="cpu", gflops=50.0), 200.0) == 0.25


def test_bench_cli_table(tmp_path, capsys, monkeypatch):
    """`python -m accel.bench` end to end on a tiny case (fresh processes): accel against torch in
    channels_last, eager NCHW beside it, and the table renders from the saved JSON."""
    import json

    from accel import bench
    assert bench.main(["--models", "compact", "--sizes", "16", "--impls", "accel", "torch", "torch-nchw",
                       "--repeats", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["impl"]: r for r in data["rows"]}
    assert set(rows) == {"accel", "torch", "torch-nchw"} and all("median_s" in r for r in rows.values())
    assert rows["torch"]["ratio_to_torch"] == 1.0
    assert rows["accel"]["ratio_to_torch"] == pytest.approx(rows["accel"]["median_s"] / rows["torch"]["median_s"])
    assert rows["torch-nchw"]["ratio_to_torch"] == pytest.approx(
        rows["torch-nchw"]["median_s"] / rows["torch"]["median_s"])
    # With NCHW the only float32 torch measured, it is the peer; the path comes from $RCAN_CONV as in the CLIs.
    monkeypatch.setenv("RCAN_CONV", "winograd")
    assert bench.main(["--models", "compact", "--sizes", "16", "--impls", "accel", "torch-nchw",
                       "--repeats", "1", "--json"]) == 0
    alone = {r["impl"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert alone["accel"]["conv"] == "winograd" and rows["accel"]["conv"] == "auto"
    assert alone["accel"]["ratio_to_torch"] == pytest.approx(
        alone["accel"]["median_s"] / alone["torch-nchw"]["median_s"])
    saved = tmp_path / "bench.json"
    saved.write_text(json.dumps(data))
    assert bench.main(["--table", str(saved)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table[2:]] == ["accel", "torch", "torch-nchw"]
    assert [line.split()[-1] for line in table[2:]] == [rows["accel"]["conv_path"], "-", "-"]   # the path it took
    from accel.conv import cpu_kernel  # the CPU it ran on (and on an AMX CPU, the tiles' use), in both
    from accel.platform import hardware
    amx = cpu_kernel.amx_status()
    assert data["cpu"] == hardware.describe_cpu() + (f"; {amx}" if amx else "")
    assert table[0].startswith(data["cpu"] + "; ")
