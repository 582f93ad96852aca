"""Single images of new sizes, one after another, as people run them: a size in a shape bucket already
compiled compiles nothing; a size in a new bucket of a known size class compiles the model once and times
no convolution path again (accel/run/tiles.bucket, accel/autotune.size_class)."""
import jax
import numpy as np
import pytest

import accel
from accel.conv import autotune
from accel.run.tiles import bucket

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@pytest.fixture
def counted(monkeypatch):
    """Counts XLA compilations and the autotune's timings while the test runs."""
    seen = {"compiles": 0, "timings": 0}

    def listener(name, seconds, **kwargs):
        if name == BACKEND_COMPILE:
            seen["compiles"] += 1
    jax.monitoring.register_event_duration_secs_listener(listener)
    real = autotune.time_paths

    def timed(*args, **kwargs):
        seen["timings"] += 1
        return real(*args, **kwargs)
    monkeypatch.setattr(autotune, "time_paths", timed)
    yield seen
    jax.monitoring.unregister_event_duration_listener(listener)


def test_the_ladder_bounds_padding_and_shares_nearby_sizes():
    for n in range(1, 3000):
        b = bucket(n)
        assert b >= n and b % 16 == 0 and (b - n) <= max(15, n // 8), (n, b)
        assert bucket(b) == b   # a bucket is its own bucket
    assert {bucket(n) for n in (290, 296, 300, 305, 312)} == {320}
    assert len({bucket(n) for n in range(1, 2049)}) == 40   # lengths up to 2048 in 40 shapes, not 128


def test_a_new_size_in_a_compiled_bucket_compiles_nothing(counted):
    model = accel.load_model(model="compact")   # conv auto: the autotune decides per size class
    rng = np.random.default_rng(0)
    image = lambda h, w: rng.integers(0, 256, (h, w, 3), dtype=np.uint8)   # noqa: E731
    accel.upscale_image(image(300, 300), model, tile=None)
    before = dict(counted)
    out = accel.upscale_image(image(296, 312), model, tile=None)
    assert out.shape == (592, 624, 3)
    assert counted == before, (before, counted)   # no compile, no timing
    # A new bucket (352×352 against 320×320) in the same size class (√(H·W) ≈ 256): compiled, not timed.
    assert bucket(330) == 352 and autotune.size_class(352, 352) == autotune.size_class(320, 320)
    accel.upscale_image(image(330, 330), model, tile=None)
    assert counted["timings"] == before["timings"] and counted["compiles"] > before["compiles"]
