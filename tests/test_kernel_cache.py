"""What persists between runs cannot break a later one: the kernels built at install (a damaged library, a
manifest of other sources, none at all), their build (a compiler whose output lacks the symbols, one that
hangs, $CXX with arguments, a build the compiler refuses, a killed build's leftovers) and the autotune's
decision store (values of the wrong type or range, nesting too deep to parse)."""
import json
import os
import shutil
import stat

import jax.numpy as jnp
import numpy as np
import pytest

from accel.conv import autotune, cpu_kernel
from accel.conv.kernels import build as kernels_build
from accel.platform import runtime

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (installed by .ci/run)")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "cache_dir", lambda: str(tmp_path))
    monkeypatch.setattr(autotune, "_decided", {})   # this process's decisions: none yet
    monkeypatch.delenv("CXX", raising=False)
    return tmp_path


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A copy of the install's kernel folder, used instead of it ($RCAN_KERNELS)."""
    folder = tmp_path / "kernels"
    shutil.copytree(kernels_build.LIB, folder)
    monkeypatch.setenv(cpu_kernel.FOLDER_ENV, str(folder))
    return folder


def loads(path):
    """Whether the library at path loads in a child process with the float32 kernel's symbol (a bad file
    costs this process nothing)."""
    import subprocess
    import sys
    code = "import ctypes, sys; h = ctypes.CDLL(sys.argv[1]); h.RcanWinograd4F32; print('ok')"
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    return done.stdout.strip() == "ok"


def test_the_install_built_every_build_of_this_architecture():
    found = cpu_kernel.manifest(kernels_build.LIB)
    assert found["sources"] == cpu_kernel.sources_digest() and not found["refused"], found["refused"]
    assert sorted(found["builds"]) == sorted(f"{lib}/{build}" for lib, build in kernels_build.builds_for())
    assert all(loads(os.path.join(kernels_build.LIB, b["file"])) for k, b in found["builds"].items()
               if k.startswith("f32/") and k.split("/")[1] in ("portable", *cpu_kernel.native_builds("f32")))


def test_a_damaged_library_is_named_once_and_not_loaded(installed, capsys, monkeypatch):
    monkeypatch.setattr(cpu_kernel, "_WARNED", set())
    path = installed / kernels_build.filename("f32", "portable")
    with open(path, "r+b") as f:   # a full disk or a killed copy: the file cut short
        f.truncate(os.path.getsize(path) // 3)
    for _ in range(2):
        with pytest.raises(cpu_kernel.Unavailable, match=f"{path}: damaged .*reinstall"):
            cpu_kernel.build("portable", "f32")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {path}: damaged"), err
    assert cpu_kernel.build("portable", "bf16").startswith(str(installed))   # the other library still loads


def test_a_build_of_other_sources_or_none_at_all_is_not_loaded(installed):
    manifest = json.loads((installed / "manifest.json").read_text())
    (installed / "manifest.json").write_text(json.dumps({**manifest, "sources": "0" * 16}))
    with pytest.raises(cpu_kernel.Unavailable, match="were built from other sources .*python -m accel.conv.kernels.build"):
        cpu_kernel.build("portable", "f32")
    (installed / "manifest.json").unlink()
    cpu_kernel.manifest.cache_clear()
    with pytest.raises(cpu_kernel.Unavailable, match="the CPU kernels were not built at install"):
        cpu_kernel.build("portable", "f32")
    cpu_kernel.manifest.cache_clear()


@needs_gxx
def test_a_compiler_whose_output_lacks_the_symbols_is_not_published(cache, tmp_path, monkeypatch):
    fake = tmp_path / "fakecxx"   # "compiles" an empty library, whatever it is asked
    fake.write_text('#!/bin/sh\nout=""; while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done\n'
                    'echo "" | g++ -shared -fPIC -x c++ - -o "$out"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CXX", str(fake))
    with pytest.raises(kernels_build.BuildError, match="is unusable: it does not load: .*RcanWinograd4F32"):
        kernels_build.compile_one("f32", "portable", str(tmp_path / "out"))
    assert not list((tmp_path / "out").iterdir())   # nothing kept for a later run to trust


@needs_gxx
def test_a_compiler_that_never_returns_is_stopped(cache, tmp_path, monkeypatch):
    hang = tmp_path / "hangcxx"
    hang.write_text("#!/bin/sh\nsleep 600\n")
    hang.chmod(hang.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CXX", str(hang))
    monkeypatch.setattr(kernels_build, "COMPILE_TIMEOUT", 2)
    with pytest.raises(kernels_build.BuildError, match="did not finish in 2 s"):
        kernels_build.compile_one("f32", "portable", str(tmp_path / "out"))
    assert not list((tmp_path / "out").iterdir())


@needs_gxx
def test_cxx_with_arguments_builds_a_refused_build_is_named_and_leftovers_go(cache, tmp_path, monkeypatch):
    folder = tmp_path / "out"
    folder.mkdir()
    dead = folder / ".tmp-999999999-abc.so"   # a build killed (SIGKILL) before it could clean up
    dead.write_bytes(b"")
    monkeypatch.setenv("CXX", "g++ -fno-plt")
    # An older compiler may not know the newest build's flags (AMX's): that build is named, the others made.
    lib = kernels_build.LIBRARIES["f32"]
    monkeypatch.setitem(kernels_build.LIBRARIES, "f32", kernels_build.Library(
        lib.source, {"newest": ((), ("-mno-such-instructions",)), **lib.builds}, lib.targets))
    lines = []
    manifest = kernels_build.build_all(str(folder), pairs=[("f32", "newest"), ("f32", "portable")], log=lines.append)
    assert list(manifest["builds"]) == ["f32/portable"] and "failed" in manifest["refused"]["f32/newest"]
    assert loads(folder / "winograd4_f32-portable.so") and not dead.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "winograd4_f32-portable.so"]
    assert any(line.startswith("warning: f32/newest not built") for line in lines)
    monkeypatch.setenv("CXX", "no-such-compiler -O2")
    with pytest.raises(kernels_build.BuildError, match=r"\$CXX \('no-such-compiler -O2'\) is not a command"):
        kernels_build.compile_one("bf16", "portable", str(folder))
    monkeypatch.delenv("CXX")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(kernels_build.BuildError, match="no C\\+\\+ compiler .*RCAN_NO_KERNELS=1"):
        kernels_build.build_all(str(folder))


@pytest.mark.parametrize("seconds", ['"0.1"', "null", "1" + "0" * 400, "-1", "true"])
def test_autotune_records_of_the_wrong_type_are_measured_again(cache, seconds):
    offered = autotune.paths(jnp.float32, 8)
    record = ('{"choice": "%s", "spread": 0.01, "busy": 0.0, "seconds": {%s}}'
              % (offered[0], ", ".join(f'"{p}": {seconds}' for p in offered)))
    (cache / "conv_choices.json").write_text('{"%s": %s}' % (autotune._key(8, 8, 8, jnp.float32), record))
    assert not autotune.decided(8, 8, 8, jnp.float32)
    assert autotune.choose(1, 8, 8, 8, jnp.float32) in offered   # measured, stored afresh
    # (a steady measurement replaces the record; on a busy machine it holds for this process only)


def test_an_autotune_store_nested_too_deep_or_too_big_is_ignored_with_one_warning(cache, capsys, monkeypatch):
    (cache / "conv_choices.json").write_text("[" * 100_000 + "]" * 100_000)
    monkeypatch.setattr(autotune, "_warned", set())
    assert autotune._load() == {} and autotune._load() == {}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable decision store (RecursionError)" in err
    (cache / "conv_choices.json").write_text(json.dumps({"x": "y" * autotune.STORE_LIMIT}))
    monkeypatch.setattr(autotune, "_warned", set())
    assert autotune._load() == {} and "larger than" in capsys.readouterr().err
    assert autotune.choose(1, 8, 8, 8, jnp.float32) in autotune.paths(jnp.float32, 8)


def test_the_cli_survives_a_damaged_library(tmp_path, installed):
    """A damaged library (once a crash: SIGBUS, exit 135): one warning line and XLA's convolutions, nearly
    the same pixels; asked for by name, a one-line usage error."""
    import subprocess
    import sys

    from conftest import SET5
    from PIL import Image
    Image.open(SET5 / "LR_x2" / "bird_LRBI_x2.png").crop((0, 0, 40, 32)).save(tmp_path / "a.png")
    env = dict(os.environ, RCAN_JAX_CACHE=str(tmp_path / "cache"), HOME=str(tmp_path))
    run = lambda suffix, conv="auto": subprocess.run(   # noqa: E731
        [sys.executable, "-m", "accel.upscale", str(tmp_path / "a.png"), "--model", "compact", "--conv", conv,
         "--suffix", suffix, "--quiet"], capture_output=True, text=True, timeout=600, env=env)
    first = run("1")
    assert first.returncode == 0, first.stderr
    for library in installed.glob("winograd4_f32-*.so"):
        with open(library, "r+b") as f:
            f.truncate(8192)
    second = run("2")
    assert second.returncode == 0, second.stderr
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    if cpu_kernel.native_builds("f32"):   # (a CPU without the kernels' instructions never opens them)
        assert len(lines) == 1 and "winograd4_f32-" in lines[0] and ": damaged" in lines[0], second.stderr
    a, b = (np.asarray(Image.open(tmp_path / f"a_{i}.png"), np.float64) for i in (1, 2))
    assert 10 * np.log10(255 ** 2 / max(np.mean((a - b) ** 2), 1e-12)) > 50
    named = run("3", "kernel-winograd4")
    last = named.stderr.strip().splitlines()[-1]
    assert named.returncode == 2 and "conv kernel-winograd4 cannot run here" in last, named.stderr
    assert ": damaged" in last or not cpu_kernel.native_builds("f32"), last
