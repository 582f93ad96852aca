"""The command lines as users meet them: entry points, --version, output naming and sizes, mirrored
folders, --skip-existing, --json, the exit-code contract, and the README's commands as written."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SET5
from PIL import Image

from accel import evaluate, upscale
from reference import RCANConfig
from reference.weights import init_weights, save_weights

TINY = RCANConfig(scale=2, n_resgroups=1, n_resblocks=1, n_feats=8, reduction=2)
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COMMANDS = {"rcan-upscale": "accel.upscale", "rcan-evaluate": "accel.evaluate", "rcan-convert": "weights_convert",
            "rcan-train": "accel.train", "rcan-bench": "accel.bench", "rcan-report": "accel.report", "rcan-app": "accel.app"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny_x2.safetensors"
    save_weights(path, init_weights(TINY, 0), TINY)
    return str(path)


def photo(path, size=(24, 18)):
    im = Image.open(SET5 / "HR_x2" / "bird_HR_x2.png").convert("RGB").crop((100, 100, 100 + size[0], 100 + size[1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def run(capsys, *argv):
    code = upscale.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_console_scripts_are_installed_with_version_and_exit_codes(command):
    exe = BIN / command
    assert exe.is_file(), f"{command} is not installed next to {sys.executable} (pip install -e .)"
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith(f"{command} ") and "rcan-threeways" in r.stdout, r
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "exit status: 0 done; 1 some inputs failed" in r.stdout, r.stdout[-400:]
    # The python -m form keeps working and says the same.
    r = subprocess.run([sys.executable, "-m", COMMANDS[command], "--version"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "rcan-threeways" in r.stdout


def test_suffix_format_and_sizes(tmp_path, capsys, weights):
    src = photo(tmp_path / "a.png")                       # 24×18
    assert run(capsys, src, "--weights", weights, "--suffix", "big", "--format", "JPEG", "--quiet")[0] == 0
    assert Image.open(tmp_path / "a_big.jpeg").format == "JPEG"
    assert run(capsys, src, "--weights", weights, "--outscale", "1.5", "--quiet")[0] == 0
    assert Image.open(tmp_path / "a_x1.5.png").size == (36, 27)       # ×2 by the model, then resampled
    assert run(capsys, src, "--weights", weights, "--outscale", "3", "--quiet")[0] == 0
    assert Image.open(tmp_path / "a_x3.png").size == (72, 54)
    assert run(capsys, src, "--weights", weights, "--width", "100", "--suffix", "w", "--quiet")[0] == 0
    assert Image.open(tmp_path / "a_w.png").size == (100, 75)         # aspect kept
    assert run(capsys, src, "--weights", weights, "--width", "30", "--height", "50", "--suffix", "wh",
               "--quiet")[0] == 0
    assert Image.open(tmp_path / "a_wh.png").size == (30, 50)


@pytest.mark.parametrize("args, message", [
    (["-o", "{t}/out.jpg", "--format", "png"], "is .jpg but --format is png"),
    (["-o", "{t}/out"], "not a folder and not an image file name"),
    (["-o", "{t}/out.xyz"], "not a folder and not an image file name"),
    (["--tile", "64", "--tile-overlap", "40"], "--tile-overlap must be between 0 and 32"),
    (["--tile-overlap", "-1"], "--tile-overlap must be between 0 and 32"),
    (["--outscale", "2", "--width", "10"], "give one"),
    (["--model", "compact", "--weights", "{w}"], "give one"),
])
def test_usage_errors_exit_2_before_any_work(tmp_path, capsys, weights, args, message):
    src = photo(tmp_path / "a.png")
    with pytest.raises(SystemExit) as e:
        upscale.main([str(src), *(a.format(t=tmp_path, w=weights) for a in args)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]     # nothing written


def test_folders_are_mirrored_and_resumed(tmp_path, capsys, weights):
    for rel in ("a.png", "x/a.png", "x/y/b.png", "z/a.png"):
        photo(tmp_path / "in" / rel)
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, tmp_path / "in", "-o", out, "--weights", weights, "--json")
    assert code == 0
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == \
        ["a_x2.png", "x/a_x2.png", "x/y/b_x2.png", "z/a_x2.png"]      # same names in different folders: kept apart
    assert [r["status"] for r in rows] == ["done"] * 4
    row = rows[0]
    assert row["input_size"] == [24, 18] and row["output_size"] == [48, 36] and row["model"] == weights
    assert row["scale"] == 2 and row["seconds"] > 0 and Path(row["output"]).is_file()
    # Resume: what exists is skipped, a new image is done.
    photo(tmp_path / "in" / "x" / "new.png")
    code, stdout, _ = run(capsys, tmp_path / "in", "-o", out, "--weights", weights, "--json", "--skip-existing")
    status = {Path(r["input"]).name + ":" + r["status"] for r in map(json.loads, stdout.splitlines())}
    assert code == 0 and status == {"a.png:skipped", "b.png:skipped", "new.png:done"}
    # Without --skip-existing the existing outputs are errors (exit 1), and nothing is replaced.
    code, stdout, err = run(capsys, tmp_path / "in", "-o", out, "--weights", weights, "--quiet")
    assert code == 1 and err.count("exists (use --force") == 5


def test_same_name_from_two_folders_into_one_output_is_refused(tmp_path, capsys, weights):
    a, b = photo(tmp_path / "p" / "img.png"), photo(tmp_path / "q" / "img.png")
    with pytest.raises(SystemExit) as e:
        upscale.main([str(a), str(b), "-o", str(tmp_path / "out"), "--weights", weights, "--force"])
    assert e.value.code == 2 and "would all write" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_quiet_explain_and_json(tmp_path, capsys, weights):
    src = photo(tmp_path / "a.png")
    code, stdout, err = run(capsys, src, "--weights", weights, "--quiet")
    assert code == 0 and stdout == "" and err == ""
    code, stdout, err = run(capsys, src, "--weights", weights, "--explain", "--suffix", "e")
    assert code == 0 and f"report: {tmp_path / 'a_e.md'}" in err and f"report: {tmp_path / 'a_e.html'}" in err
    # Reports are outputs too: kept unless --force.
    (tmp_path / "a_e.png").unlink()
    code, stdout, err = run(capsys, src, "--weights", weights, "--explain", "--suffix", "e")
    assert code == 1 and "a_e.md exists" in err and not (tmp_path / "a_e.png").exists()


def test_shipped_model_by_name_and_device(tmp_path, capsys):
    src = photo(tmp_path / "a.png")
    code, stdout, _ = run(capsys, src, "--model", "compact", "--device", "cpu", "--json")
    assert code == 0 and json.loads(stdout)["model"] == "shipped:compact"
    code = subprocess.run([sys.executable, "-m", "accel.upscale", str(src), "--device", "gpu", "--force",
                           "--quiet"], capture_output=True, text=True, timeout=300)
    import jax
    try:
        has_gpu = bool(jax.devices("gpu"))
    except RuntimeError:
        has_gpu = False
    if has_gpu:
        assert code.returncode == 0, code.stderr
    else:   # a usage error, one line, nothing written
        assert code.returncode == 2 and code.stderr.startswith("error: --device gpu: ") and \
            code.stderr.count("\n") == 1, code.stderr


def test_evaluate_and_upscale_agree_on_exit_codes(tmp_path, capsys):
    src = photo(tmp_path / "a.png")
    assert run(capsys, src, "--scale", "4")[0] == 2                           # ×4 asked of the ×2 model
    assert evaluate.main(["--hr", str(SET5 / "HR_x4"), "--scale", "4", "--quiet"]) == 2
    assert "×2; for ×4 pass --weights" in capsys.readouterr().err
    assert evaluate.main(["--hr", str(tmp_path / "missing"), "--scale", "2"]) == 2


# --- the README, as written --------------------------------------------------------------------------

def readme_blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_python_runs_as_written(monkeypatch):
    monkeypatch.chdir(ROOT)
    blocks = readme_blocks("python")
    assert blocks
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})


def test_readme_commands_run_as_written(tmp_path):
    """Every `bash` block line, from a scratch copy of what it reads (the install and the test-suite
    lines excepted: this test runs inside both)."""
    shutil.copytree(ROOT / "accel/examples", tmp_path / "accel/examples", ignore=shutil.ignore_patterns("*_x2.*"))
    shutil.copytree(ROOT / "tests/data/Set5", tmp_path / "tests/data/Set5")
    lines = [line.split("  #")[0].strip() for block in readme_blocks("bash") for line in block.splitlines()]
    commands = [c for c in lines if c and not c.startswith(("pip ", "python3 -m venv", "python -m pytest", "#"))]
    assert any("accel.upscale" in c for c in commands) and any("rcan-evaluate" in c for c in commands)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    for command in commands:
        r = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
        assert r.returncode == 0, f"{command}\n{r.stderr[-2000:]}"
    assert (tmp_path / "accel/examples/butterfly_lr_x2.png").is_file()


def test_no_user_facing_text_points_at_the_workspace():
    texts = [ROOT / "README.md", *ROOT.glob("accel/weights/*.md"), *ROOT.glob("accel/weights/*.json")]
    texts += [p for p in (ROOT / "accel").glob("*.py")] + [ROOT / "weights_convert/__main__.py"]
    bad = [str(p.relative_to(ROOT)) for p in texts if "../shared" in p.read_text()]
    assert not bad, bad
    modules = ["accel.upscale", "accel.evaluate", "accel.train", "accel.bench", "accel.report"]
    for m in modules:
        r = subprocess.run([sys.executable, "-m", m, "--help"], capture_output=True, text=True, timeout=120)
        assert "../shared" not in r.stdout, m


def test_the_base_install_runs_the_main_job(tmp_path):
    """`pip install .` without extras (no matplotlib, gradio or torch) upscales, as `make demo` does; --explain
    names the extra it needs."""
    src = tmp_path / "a.png"
    Image.open(ROOT / "accel/examples/butterfly_lr.png").crop((0, 0, 32, 24)).save(src)
    blocked = "import sys; [sys.modules.__setitem__(m, None) for m in ('matplotlib', 'gradio', 'torch')]; "
    code = blocked + "from accel import upscale; sys.exit(upscale.main(sys.argv[1:]))"
    run = lambda *extra: subprocess.run([sys.executable, "-c", code, str(src), "--model", "compact", "--quiet", "--force",   # noqa: E731
                                         *extra], capture_output=True, text=True, timeout=600, cwd=ROOT)
    done = run()
    assert done.returncode == 0 and (tmp_path / "a_x2.png").is_file(), done.stderr
    explain = run("--explain")
    assert explain.returncode == 2 and "pip install 'rcan-threeways[report]'" in explain.stderr, explain.stderr
