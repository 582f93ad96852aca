"""Builds the CPU convolution kernels (the C++ sources beside this file) into shared libraries: run by
`pip install` (setup.py's build_ext: every build the compiler makes for this architecture, so a wheel
carries them to machines without a compiler), and by hand after editing a source:

    python -m accel.conv.kernels.build          # rebuilds accel/conv/kernels/lib/ in this checkout

Nothing here imports the rest of the package (setup.py loads this file before the package is installed);
jax is needed only for the XLA FFI headers' folder. accel/conv/cpu_kernel.py loads what this writes and never
calls a compiler.

What is written to the output folder: one `<source stem>-<build>.so` per build, and manifest.json naming
the sources' digest (a library is only used with the sources it was built from), each library's SHA-256
(a file cut short by a full disk or a killed copy would crash the process that maps it: SIGBUS), and the
builds the compiler refused, with its last line of error.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor


@dataclasses.dataclass(frozen=True)
class Library:
    """One C++ source built into a shared library with its custom calls, once per build: the native builds
    for the instructions they need, fastest first, and "portable" (plain C++) for any CPU."""
    source: str
    # build -> (instructions it needs, as /proc/cpuinfo names them, or None for a build only the tests run;
    # compiler flags)
    builds: dict
    # scheme -> {the activations' dtype (input and output): (custom-call target, the library's handler symbol)}
    targets: dict

    @property
    def stem(self) -> str:
        return os.path.splitext(self.source)[0]

    def symbols(self) -> list[str]:
        return [symbol for by_dtype in self.targets.values() for _, symbol in by_dtype.values()]


LIBRARIES = {
    "bf16": Library("conv3x3_bf16.cc",
                    {"amx": (("avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile", "amx_bf16"),
                             ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512bf16", "-mfma", "-mamx-tile",
                              "-mamx-bf16")),
                     "avx512bf16": (("avx512f", "avx512bw", "avx512vl", "avx512_bf16"),
                                    ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512bf16", "-mfma")),
                     # The AMX tile code on amx.h's plain C++ tiles: for the tests, on any CPU.
                     "amx-emulated": (None, ("-DRCAN_AMX_EMULATE",))},
                    {"direct": {"bfloat16": ("rcan_conv3x3_bf16", "RcanConv3x3Bf16")},
                     "winograd2": {"bfloat16": ("rcan_winograd2_bf16", "RcanWinograd2Bf16")}}),
    "f32": Library("winograd4_f32.cc",
                   {"avx512": (("avx512f", "fma"), ("-mavx512f", "-mfma")),
                    "avx2": (("avx2", "fma"), ("-mavx2", "-mfma"))},
                   {"winograd4": {"float32": ("rcan_winograd4_f32", "RcanWinograd4F32"),
                                  "bfloat16": ("rcan_winograd4_bf16io", "RcanWinograd4Bf16Io")}}),
}
SOURCES = os.path.dirname(os.path.abspath(__file__))   # the kernels' C++ sources and headers
LIB = os.path.join(SOURCES, "lib")                      # where `python -m accel.conv.kernels.build` writes
MANIFEST = "manifest.json"
BASE_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-w")
X86 = ("x86_64", "amd64", "i686", "i386")   # the native builds' flags are x86's (-mavx512f, …)
COMPILE_TIMEOUT = 600   # seconds: a build takes 5–60 s; a compiler that never returns must not hang an install
LOAD_TIMEOUT = 60
OPT_OUT = "RCAN_NO_KERNELS"   # set to 1 at install: no kernels built (XLA's convolutions only)


class BuildError(RuntimeError):
    """No compiler, or a build that failed or does not load."""


def sources_digest(folder: str = SOURCES) -> str:
    """A digest of every kernel source and header: a build, and an autotune decision that timed one, is
    only used with the same code."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        if name.endswith((".cc", ".h")):
            with open(os.path.join(folder, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read())
    return digest.hexdigest()[:16]


def file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def filename(library: str, build: str) -> str:
    return f"{LIBRARIES[library].stem}-{build}.so"


def compiler() -> list[str]:
    """The compiler's command line: $CXX as a shell would split it ("g++ -fno-plt"), else c++/g++/clang++."""
    if os.environ.get("CXX"):
        words = shlex.split(os.environ["CXX"])
        if not words or not shutil.which(words[0]):
            raise BuildError(f"$CXX ({os.environ['CXX']!r}) is not a command here")
        return words
    found = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not found:
        raise BuildError(f"no C++ compiler (c++, g++ or clang++; or $CXX) to build the CPU kernels: install one "
                         f"(Debian: apt-get install g++), or set {OPT_OUT}=1 to install without them "
                         "(XLA's convolutions only)")
    return [found]


def builds_for(machine: str | None = None) -> list[tuple[str, str]]:
    """(library, build) pairs this architecture's compiler can make: every build on x86, else the portable
    and emulated ones (plain C++)."""
    x86 = (machine or platform.machine()).lower() in X86
    return [(name, build) for name, lib in LIBRARIES.items()
            for build, (needs, _) in [*lib.builds.items(), ("portable", ((), ()))]
            if x86 or needs is None or build == "portable"]


def _dies_with_us(cmd: list[str]) -> list[str]:
    """cmd under util-linux's setpriv --pdeathsig, where there is one: the compiler of a build whose process
    is killed is killed too (a preexec_fn would make subprocess fork a multithreaded process)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *cmd] if setpriv else cmd


def _test_load(path: str, symbols) -> str | None:
    """Load a new build in a child process (a crash there costs nothing here); None or what went wrong."""
    probe = "import ctypes, sys; h = ctypes.CDLL(sys.argv[1]); [getattr(h, s) for s in sys.argv[2:]]"
    try:
        done = subprocess.run([sys.executable, "-c", probe, path, *symbols], capture_output=True, text=True,
                              timeout=LOAD_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"loading it did not finish in {LOAD_TIMEOUT} s"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return f"it does not load: {last}"
    return None


def include_dir() -> str:
    """The XLA FFI headers (api/ffi.h) that jaxlib ships."""
    import jax.ffi
    return jax.ffi.include_dir()


def compile_one(library: str, build: str, folder: str, cxx: list[str] | None = None,
                include: str | None = None) -> str:
    """Compile one build into folder (beside its final name, loaded once in a child process, then renamed
    into place: nobody ever loads half a file, nor one that does not load); returns its path."""
    lib = LIBRARIES[library]
    cxx = cxx or compiler()
    flags = BASE_FLAGS + (() if build == "portable" else lib.builds[build][1])
    path = os.path.join(folder, filename(library, build))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", suffix=".so", dir=folder)
    os.close(fd)
    cmd = [*cxx, *flags, f"-I{include or include_dir()}", os.path.join(SOURCES, lib.source), "-o", tmp]
    try:
        try:
            done = subprocess.run(_dies_with_us(cmd), capture_output=True, text=True, timeout=COMPILE_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise BuildError(f"building {lib.source} ({build}) with {shlex.join(cxx)} did not finish in "
                             f"{COMPILE_TIMEOUT} s") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise BuildError(f"building {lib.source} ({build}) with {shlex.join(cxx)} failed: {last}")
        problem = _test_load(tmp, lib.symbols())
        if problem:
            raise BuildError(f"the {build} build of {lib.source} by {shlex.join(cxx)} is unusable: {problem}")
        os.chmod(tmp, 0o755)   # (mkstemp's file is the owner's only: an install is for every user)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def build_all(folder: str = LIB, machine: str | None = None, jobs: int | None = None, log=print,
              pairs=None) -> dict:
    """Every build for this architecture (or the (library, build) pairs given) into folder, in parallel, and
    the manifest; returns the manifest.
    A build the compiler refuses (an older compiler may not know AMX's flags) is named in the manifest and
    left out; a library none of whose builds compiled is an error (the compiler does not work)."""
    cxx, include = compiler(), include_dir()
    pairs = pairs or builds_for(machine)
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):   # earlier builds (other sources, other builds) and killed builds' leftovers
        if name.endswith(".so") or name.startswith(".tmp-") or name == MANIFEST:
            os.remove(os.path.join(folder, name))

    def one(pair):
        try:
            return pair, compile_one(*pair, folder, cxx, include), None
        except BuildError as e:
            return pair, None, str(e)
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        done = list(pool.map(one, pairs))
    manifest = {"sources": sources_digest(), "compiler": shlex.join(cxx), "machine": machine or platform.machine(),
                "builds": {}, "refused": {}}
    for (library, build), path, error in done:
        key = f"{library}/{build}"
        if path:
            manifest["builds"][key] = {"file": os.path.basename(path), "sha256": file_digest(path)}
            log(f"built {key}: {os.path.basename(path)}")
        else:
            manifest["refused"][key] = error
            log(f"warning: {key} not built: {error}")
    for library in {library for library, _ in pairs}:
        if not any(key.startswith(library + "/") for key in manifest["builds"]):
            raise BuildError(f"no build of {LIBRARIES[library].source} compiled: "
                             + "; ".join(e for k, e in manifest["refused"].items() if k.startswith(library + "/")))
    # Written last, by rename: a folder without a manifest holds no usable kernels.
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{MANIFEST}")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(folder, MANIFEST))
    return manifest


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m accel.conv.kernels.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=LIB, help=f"output folder (default: {LIB})")
    ap.add_argument("--jobs", type=int, default=None, help="builds compiled at once (default: the CPU count)")
    args = ap.parse_args(argv)
    try:
        build_all(args.out, jobs=args.jobs)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
