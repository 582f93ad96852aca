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

import torch_rcan

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
