import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# JAX on CPU: exact float32 matmuls in tests (the default may use lower-precision passes on accelerators).
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")

DATA = Path(__file__).parent / "data"
SET5 = DATA / "Set5"

# derandomize: the same examples on every run, so CI cannot pass or fail by the luck of the draw.
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow],
                          print_blob=True, derandomize=True)
settings.load_profile("ci")


def assert_close(actual, expected, atol, rtol, what=""):
    """atol + rtol·|expected|; on failure say where, how much, and the first mismatches."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = np.abs(actual - expected)
    bad = err > atol + rtol * np.abs(expected)
    if bad.any():
        idx = np.argwhere(bad)[:5]
        first = ", ".join(f"{tuple(i)}: {actual[tuple(i)]:.6g} vs {expected[tuple(i)]:.6g}" for i in idx)
        pytest.fail(f"{what}: {bad.sum()} of {bad.size} values off (atol {atol}, rtol {rtol}); "
                    f"max |diff| {err.max():.3g}, max |ref| {np.abs(expected).max():.3g}; first: {first}")
    return float(err.max())


@pytest.fixture(scope="session")
def set5():
    return SET5
