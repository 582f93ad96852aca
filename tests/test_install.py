"""The package as a user installs it: a wheel built from this checkout (`python -m build`) carries the CPU
kernels, and installed into a fresh venv on a PATH without any compiler, it loads and runs them."""
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from accel.conv import cpu_kernel
from accel.conv.kernels import build as kernels_build

ROOT = Path(__file__).resolve().parent.parent

# Run in the fresh venv, from a folder outside the checkout: where accel comes from, which kernels it
# holds, and the float32 kernel (portable, and the native build where this CPU runs one) against XLA.
PROBE = """
import shutil, sys
import jax, jax.numpy as jnp, numpy as np
from jax import lax
import accel
from accel.conv import cpu_kernel
assert not any(shutil.which(c) for c in ("c++", "g++", "gcc", "cc", "clang++")), "a compiler is on PATH"
print(accel.__file__)
print(" ".join(sorted(cpu_kernel.manifest(cpu_kernel.folder())["builds"])))
rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((1, 12, 20, 16)), jnp.float32)
k = jnp.asarray(rng.standard_normal((3, 3, 16, 16)) * 0.1, jnp.float32)
exact = lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                 precision=lax.Precision.HIGHEST)
for native in [False] + cpu_kernel.native_builds("f32"):
    y = cpu_kernel.conv3x3(x, k, scheme="winograd4", native=native)
    assert float(jnp.abs(y - exact).max()) < 1e-3, native
print("ran", cpu_kernel.native_builds("f32") or ["portable"])
print("winograd4", cpu_kernel.unavailable("winograd4"))
"""


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="building the wheel needs a C++ compiler (installed by .ci/run)")
def test_a_wheel_carries_the_kernels_to_a_machine_without_a_compiler(tmp_path):
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist),
                            str(ROOT)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("rcan_threeways-*.whl")
    assert not wheel.name.endswith("-none-any.whl"), wheel.name   # a platform wheel: it holds native code
    names = zipfile.ZipFile(wheel).namelist()
    expected = {f"accel/conv/kernels/lib/{kernels_build.filename(lib, b)}" for lib, b in kernels_build.builds_for()}
    assert expected | {"accel/conv/kernels/lib/manifest.json"} <= set(names), sorted(names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                                "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    # The dependencies (jax, numpy, …) from this environment, as a path entry: not its editable install.
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {"PATH": str(venv / "bin"), "HOME": str(tmp_path), "JAX_PLATFORMS": "cpu"}
    ran = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, timeout=600, cwd=away,
                         env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    where, builds, *rest = ran.stdout.splitlines()
    assert where.startswith(purelib), where                  # the wheel's accel, not this checkout's
    assert builds.split() == sorted(f"{lib}/{b}" for lib, b in kernels_build.builds_for())
    expected_reason = cpu_kernel.unavailable("winograd4")   # None where this CPU runs a native build
    assert rest[-1] == f"winograd4 {expected_reason}", rest
