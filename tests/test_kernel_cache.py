"""What persists between runs cannot break a later one: the kernel libraries' cache (a damaged file, a
build without its symbols, a compiler that hangs, $CXX with arguments, a killed build's leftovers) and the
autotune's decision store (values of the wrong type or range, nesting too deep to parse)."""
import json
import os
import shutil
import stat

import jax.numpy as jnp
import numpy as np
import pytest

from accel import autotune, cpu_kernel, runtime

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (installed by .ci/run)")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "cache_dir", lambda: str(tmp_path))
    monkeypatch.setattr(autotune, "_decided", {})   # this process's decisions: none yet
    monkeypatch.delenv("CXX", raising=False)
    return tmp_path


def portable_conv(path):
    """The portable float32 Winograd library at path, run once in a child process: its output (or the
    failure) without risking this process on a bad file."""
    import subprocess
    import sys
    code = ("import ctypes, sys; h = ctypes.CDLL(sys.argv[1]); h.RcanWinograd4F32; print('ok')")
    return subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=120)


def test_a_truncated_cached_library_is_rebuilt_with_one_warning(cache, capsys):
    path = cpu_kernel.build("portable", "f32")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:   # a full disk or a killed copy: the file cut short
        f.truncate(size // 3)
    again = cpu_kernel.build("portable", "f32")
    err = capsys.readouterr().err
    assert again == path and os.path.getsize(path) == size and err.count("\n") == 1
    assert err.startswith(f"warning: {path}: damaged") and portable_conv(path).stdout.strip() == "ok"


def test_a_compiler_whose_output_lacks_the_symbols_is_not_published(cache, tmp_path, monkeypatch):
    fake = tmp_path / "fakecxx"   # "compiles" an empty library, whatever it is asked
    fake.write_text('#!/bin/sh\nout=""; while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done\n'
                    'echo "" | g++ -shared -fPIC -x c++ - -o "$out"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CXX", str(fake))
    with pytest.raises(cpu_kernel.Unavailable, match="is unusable: it does not load: .*RcanWinograd4F32"):
        cpu_kernel.build("portable", "f32")
    assert not list((cache / "kernels").glob("*.so"))   # nothing kept for a later run to trust


def test_a_compiler_that_never_returns_is_stopped(cache, tmp_path, monkeypatch):
    hang = tmp_path / "hangcxx"
    hang.write_text("#!/bin/sh\nsleep 600\n")
    hang.chmod(hang.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CXX", str(hang))
    monkeypatch.setattr(cpu_kernel, "COMPILE_TIMEOUT", 2)
    with pytest.raises(cpu_kernel.Unavailable, match="did not finish in 2 s"):
        cpu_kernel.build("portable", "f32")
    assert not [p for p in (cache / "kernels").iterdir() if p.name.startswith(".tmp-")]


def test_cxx_with_arguments_builds_and_a_killed_builds_leftovers_go(cache, monkeypatch):
    folder = cache / "kernels"
    folder.mkdir()
    dead = folder / ".tmp-999999999-abc.so"   # a build killed (SIGKILL) before it could clean up
    dead.write_bytes(b"")
    monkeypatch.setenv("CXX", "g++ -fno-plt")
    path = cpu_kernel.build("portable", "f32")
    assert portable_conv(path).stdout.strip() == "ok" and not dead.exists()
    monkeypatch.setenv("CXX", "no-such-compiler -O2")
    with pytest.raises(cpu_kernel.Unavailable, match=r"\$CXX \('no-such-compiler -O2'\) is not a command"):
        cpu_kernel.build("portable", "bf16")


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


def test_the_cli_survives_a_truncated_cached_library(tmp_path):
    """The row that crashed every later run (SIGBUS, exit 135): one warning line, the kernel rebuilt, the
    same pixels."""
    import subprocess
    import sys
    from PIL import Image
    from conftest import SET5
    Image.open(SET5 / "LR_x2" / "bird_LRBI_x2.png").crop((0, 0, 40, 32)).save(tmp_path / "a.png")
    env = dict(os.environ, RCAN_JAX_CACHE=str(tmp_path / "cache"), HOME=str(tmp_path))
    env.pop("CXX", None)
    run = lambda suffix: subprocess.run(   # noqa: E731
        [sys.executable, "-m", "accel.upscale", str(tmp_path / "a.png"), "--model", "compact", "--conv",
         "kernel-winograd4", "--suffix", suffix, "--quiet"], capture_output=True, text=True, timeout=600, env=env)
    first = run("1")
    if first.returncode == 2 and "cannot run here" in first.stderr:
        pytest.skip(f"kernel-winograd4 cannot run on this CPU: {first.stderr.strip()}")
    assert first.returncode == 0, first.stderr
    (library,) = (tmp_path / "cache" / "kernels").glob("winograd4_f32-*.so")
    with open(library, "r+b") as f:
        f.truncate(8192)
    second = run("2")
    assert second.returncode == 0, second.stderr
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"warning: {library}: damaged"), second.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a_1.png")), np.asarray(Image.open(tmp_path / "a_2.png")))
