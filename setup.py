"""Builds the C++ CPU kernels at install (accel/conv/kernels/build.py): `pip install .` compiles every build
this architecture's compiler makes into the package, so that a wheel (`python -m build`) carries them to
machines without a compiler. No compiler: a one-line error naming the fix, or RCAN_NO_KERNELS=1 to install
without the kernels (XLA's convolutions only). Everything else is in pyproject.toml."""
import importlib.util
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def _kernels_build():
    """accel/conv/kernels/build.py, loaded by path: the package is not installed yet (nor importable without jax)."""
    path = os.path.join(HERE, "accel", "conv", "kernels", "build.py")
    spec = importlib.util.spec_from_file_location("rcan_kernels_build", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # (its dataclass looks its module up there)
    spec.loader.exec_module(module)
    return module


class BuildKernels(build_ext):
    """One Extension stands for the kernel folder: build_all writes every library and the manifest beside
    where setuptools would put it (in place for an editable install, else the wheel's build folder)."""

    def get_ext_filename(self, ext_name):
        return os.path.join(*ext_name.split(".")) + ".json"

    def folder(self):
        return os.path.dirname(self.get_ext_fullpath("accel.conv.kernels.lib.manifest"))

    def run(self):
        kernels = _kernels_build()
        folder = self.folder()
        if os.environ.get(kernels.OPT_OUT, "") not in ("", "0"):
            print(f"{kernels.OPT_OUT} is set: the CPU kernels are not built (XLA's convolutions only)")
            os.makedirs(folder, exist_ok=True)
            return
        try:
            kernels.build_all(folder)
        except kernels.BuildError as e:
            sys.exit(f"error: {e}")

    def get_outputs(self):
        folder = self.folder()
        if not os.path.isdir(folder):
            return []
        return [os.path.join(folder, name) for name in sorted(os.listdir(folder))
                if name.endswith(".so") or name == "manifest.json"]


setup(ext_modules=[Extension("accel.conv.kernels.lib.manifest", sources=[])], cmdclass={"build_ext": BuildKernels})
