"""Hostile inputs, one test per class: each ends in one specific line and a non-zero exit (or a correct
result), never a crash, a traceback, a hang, a huge allocation or a lost file. The files are made here;
checkpoints are read in a child process under a 2 GB address-space limit, so a bomb fails its test
instead of the machine. SECURITY.md says what is guaranteed."""
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch
from conftest import SET5
from PIL import Image
from safetensors.numpy import save_file

import accel
from accel.run.images import ImageError
from reference import RCANConfig
from reference.weights import FORMAT, WeightsError, init_weights, load_weights, save_weights
from tools import torch_rcan
from weights_convert import ConvertError, load_checkpoint

TINY = RCANConfig(scale=2, n_resgroups=1, n_resblocks=1, n_feats=8, reduction=2)
LIMIT = r"""
import resource, runpy, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))   # 2 GB of address space
sys.argv = ["weights_convert", *sys.argv[1:]]
runpy.run_module("weights_convert", run_name="__main__", alter_sys=True)
"""


def convert_limited(*args, timeout=60):
    """python -m weights_convert ARGS in a child limited to 2 GB: (exit code, stderr, seconds)."""
    t = time.time()
    r = subprocess.run([sys.executable, "-c", LIMIT, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stderr, time.time() - t


def one_line_error(code, err, *words):
    assert code == 2, (code, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)


def zip_checkpoint(path, members: dict, method=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(f"archive/{name}", data)
    return path


# --- checkpoints and weights ---------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"\x80\x02}" + b"N" + b"\x85" * 1_000_000 + b"Ns.",            # a million-deep tuple as a dict key
    b"\x80\x04(" + b"N" + b"\x85" * 1_000_000 + b"\x91.",          # ... as a frozenset member
    b"\x80\x02]" + b"N" + b"\x85" * 1_000_000 + b"a.",             # ... nested in a list (no hashing)
])
def test_deeply_nested_pickles_do_not_crash(tmp_path, body):
    path = zip_checkpoint(tmp_path / "deep.pt", {"data.pkl": body, "version": b"3\n"})
    code, err, _ = convert_limited("--info", path)
    one_line_error(code, err)
    with pytest.raises(ConvertError):
        load_checkpoint(path)


@pytest.mark.parametrize("member", ["data.pkl", "byteorder"])
def test_zip_bombs_are_refused_before_expanding(tmp_path, member):
    bomb = b"\0" * (300 << 20)                                       # 300 MB of zeros, ~300 KB deflated
    members = {"data.pkl": b"\x80\x02}q\x00.", "byteorder": b"little", member: bomb}
    path = zip_checkpoint(tmp_path / "bomb.pt", members, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 2 << 20
    code, err, seconds = convert_limited("--info", path)
    one_line_error(code, err, member)
    assert seconds < 20


def test_zip_members_encrypted_unknown_or_corrupt(tmp_path):
    good = zip_checkpoint(tmp_path / "g.pt", {"data.pkl": b"\x80\x02}q\x00.", "version": b"3\n"},
                          zipfile.ZIP_DEFLATED)
    raw = good.read_bytes()
    cases = {}
    # The general-purpose flag's bit 0 (encrypted), in the local and central headers.
    flagged = bytearray(raw)
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        i = -1
        while (i := raw.find(sig, i + 1)) >= 0:
            off = i + (6 if sig == b"PK\x03\x04" else 8)
            flagged[off] |= 1
    cases["encrypted"] = bytes(flagged)
    # An unknown compression method (99) in the central directory.
    method = bytearray(raw)
    i = raw.find(b"PK\x01\x02")
    method[i + 10:i + 12] = struct.pack("<H", 99)
    cases["compression method"] = bytes(method)
    # A corrupt deflate stream in data.pkl's bytes.
    corrupt = bytearray(raw)
    j = raw.find(b"data.pkl") + len(b"data.pkl")
    corrupt[j:j + 4] = b"\xff\xff\xff\xff"
    cases[""] = bytes(corrupt)
    for words, data in cases.items():
        p = tmp_path / "bad.pt"
        p.write_bytes(data)
        code, err, _ = convert_limited("--info", p)
        one_line_error(code, err, words)


def canonical(path, metadata=None, tensors=None):
    tensors = tensors if tensors is not None else init_weights(TINY, 0)
    meta = {"format": FORMAT, "config": TINY.to_json(), **(metadata or {})}
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=meta)
    return path


def test_declared_huge_config_costs_nothing(tmp_path):
    huge = RCANConfig(n_resgroups=2000, n_resblocks=1000)
    path = canonical(tmp_path / "huge.safetensors", {"config": huge.to_json()})
    code, err, seconds = convert_limited("--info", path)
    one_line_error(code, err)
    assert seconds < 10
    t = time.time()
    with pytest.raises(WeightsError, match="holds 22 tensors, the declared model has 16004012"):
        load_weights(path)
    assert time.time() - t < 2


@pytest.mark.parametrize("header", [b"[1, 2]", b'"text"', b"{\"__metadata__\": [1]}", b"{\"a\": 5}"])
def test_safetensors_headers_that_are_not_objects(tmp_path, header):
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    code, err, _ = convert_limited("--info", path)
    one_line_error(code, err)
    with pytest.raises(WeightsError):
        load_weights(path)
    with pytest.raises((WeightsError, ConvertError), match="not a safetensors file|safetensors"):
        accel.load_model(path)


def test_unparsable_config_and_wrong_ranks(tmp_path):
    path = canonical(tmp_path / "c.safetensors", {"config": "{not json"})
    one_line_error(*convert_limited("--info", path)[:2], "config")
    weights = init_weights(TINY, 0)
    weights["head.0.weight"] = weights["head.0.weight"].ravel()            # 1-D where a kernel belongs
    path = canonical(tmp_path / "r.safetensors", tensors=weights)
    one_line_error(*convert_limited("--info", path)[:2])
    state = torch_rcan.RCAN(TINY).state_dict()
    state["head.0.weight"] = state["head.0.weight"].flatten()
    torch.save(state, tmp_path / "r.pt")
    one_line_error(*convert_limited("--info", tmp_path / "r.pt")[:2])


def test_bfloat16_weights_are_converted_exactly(tmp_path):
    state = {k: v.to(torch.bfloat16) for k, v in torch_rcan.RCAN(TINY).state_dict().items()}
    from safetensors.torch import save_file as save_torch
    save_torch(state, str(tmp_path / "bf16.safetensors"))
    weights, config = load_checkpoint(tmp_path / "bf16.safetensors")
    assert config == TINY
    for k, v in state.items():
        assert weights[k].dtype == np.float32 and np.array_equal(weights[k], v.float().numpy()), k


def test_non_finite_weights_and_inputs_are_refused(tmp_path):
    weights = init_weights(TINY, 0)
    weights["body.0.body.0.body.2.weight"][0, 0, 1, 1] = np.nan
    weights["tail.1.bias"][0] = np.inf
    path = canonical(tmp_path / "nan.safetensors", tensors=weights)
    for call in (lambda: load_weights(path), lambda: accel.load_model(path), lambda: load_checkpoint(path)):
        with pytest.raises(ValueError, match="NaN or infinite values: body.0.body.0.body.2.weight"):
            call()
    code = subprocess.run([sys.executable, "-m", "accel.upscale", str(SET5 / "LR_x2" / "bird_LRBI_x2.png"), "-o",
                           str(tmp_path / "o.png"), "--weights", str(path)], capture_output=True, text=True)
    assert code.returncode == 2 and "NaN" in code.stderr and not (tmp_path / "o.png").exists()
    good = tmp_path / "ok.safetensors"
    save_weights(good, init_weights(TINY, 0), TINY)
    model = accel.load_model(good)
    lr = np.full((1, 8, 8, 3), 100, np.float32)
    lr[0, 3, 3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        accel.forward(model, lr)
    with pytest.raises(ImageError, match="NaN"):
        accel.upscale_image(lr[0], model)


FULL_DISK = r"""
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)           # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
sys.argv = ["weights_convert", *sys.argv[1:]]
runpy.run_module("weights_convert", run_name="__main__", alter_sys=True)
"""


def test_full_disk_leaves_nothing(tmp_path):
    src = tmp_path / "m.pt"
    torch.save(torch_rcan.RCAN(RCANConfig(n_resgroups=1, n_resblocks=2, n_feats=16, reduction=4)).state_dict(), src)
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run([sys.executable, "-c", FULL_DISK, str(src), "-o", str(out / "m.safetensors")],
                       capture_output=True, text=True, timeout=60)
    one_line_error(r.returncode, r.stderr, "cannot write")
    assert list(out.iterdir()) == []


# --- images, outputs, signals, concurrency ------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(path, init_weights(TINY, 0), TINY)
    return str(path)


def crop(size=(20, 16)):
    return Image.open(SET5 / "HR_x2" / "baby_HR_x2.png").convert("RGB").crop((0, 0, *size))


def test_animated_and_multipage_images_keep_every_frame(tmp_path, tiny):
    frames = [crop().rotate(a) for a in (0, 90, 180)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=[50, 70, 90], loop=2)
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:], duration=[40, 40, 80], loop=0)
    frames[0].save(tmp_path / "pages.tiff", save_all=True, append_images=frames[1:])
    r = subprocess.run([sys.executable, "-m", "accel.upscale", str(tmp_path), "-o", str(tmp_path / "out"),
                        "--weights", tiny, "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert all(json.loads(line)["frames"] == 3 for line in r.stdout.splitlines())
    gif = Image.open(tmp_path / "out" / "anim_x2.gif")
    assert gif.n_frames == 3 and gif.size == (40, 32) and gif.info.get("loop") == 2
    durations = []
    for i in range(3):
        gif.seek(i)
        durations.append(gif.info["duration"])
    assert durations == [50, 70, 90]
    assert Image.open(tmp_path / "out" / "anim_x2.png").n_frames == 3
    assert Image.open(tmp_path / "out" / "pages_x2.tiff").n_frames == 3
    # A format without frames is refused for an animation, not silently cut to its first frame.
    r = subprocess.run([sys.executable, "-m", "accel.upscale", str(tmp_path / "anim.gif"), "--format", "jpg",
                        "--weights", tiny], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "animated image (3 frames) needs --format" in r.stderr


def test_32bit_images_outside_16_bits_and_fifos_are_refused(tmp_path, tiny):
    Image.fromarray(np.array([[-5, 70000], [3, 4]] * 8, np.int32).reshape(16, 2).repeat(8, 1)).save(tmp_path / "i.tif")
    os.mkfifo(tmp_path / "pipe.png")
    good = tmp_path / "g.png"
    crop().save(good)
    t = time.time()
    r = subprocess.run([sys.executable, "-m", "accel.upscale", str(tmp_path / "i.tif"), str(tmp_path / "pipe.png"),
                        str(good), "-o", str(tmp_path / "out"), "--weights", tiny, "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and time.time() - t < 120
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2, r.stderr
    assert "outside 0..65535" in lines[0] and "pipe.png: not a regular file" in lines[1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["g_x2.png"]


def test_two_processes_never_replace_each_other(tmp_path, tiny):
    for i in range(6):
        crop((16 + 4 * i, 16)).save(tmp_path / f"p{i}.png")
    cmd = [sys.executable, "-m", "accel.upscale", *[str(tmp_path / f"p{i}.png") for i in range(6)],
           "-o", str(tmp_path / "out") + os.sep, "--weights", tiny, "--json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    done = [json.loads(line)["output"] for out, _ in results for line in out.splitlines()
            if json.loads(line)["status"] == "done"]
    assert sorted(done) == sorted(str(tmp_path / "out" / f"p{i}_x2.png") for i in range(6)), results
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signals_leave_no_temporary_files(tmp_path, tiny, sig, code):
    for i in range(40):
        crop((24 + i, 20)).save(tmp_path / f"p{i:02}.png")
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "accel.upscale", str(tmp_path), "-o", str(out), "--weights", tiny,
                          "--quiet"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (out.is_dir() and any(out.iterdir())) and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == code and err.strip().splitlines()[-1] == "interrupted", (p.returncode, err[-500:])
    assert "Traceback" not in err
    assert not [f for f in out.iterdir() if f.name.startswith(".tmp-")]
    for f in out.iterdir():                                       # what was published is whole
        Image.open(f).load()


def test_api_failures_are_the_projects_errors(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"\x80\x02crandom\nrandom\n.")
    with pytest.raises(ConvertError, match="refusing global random.random"):
        load_checkpoint(bad)
    for path in (tmp_path / "missing.pt", tmp_path):
        with pytest.raises(ConvertError):
            load_checkpoint(path)
    img = np.zeros((8, 8, 3), np.uint8)
    model = accel.load_model(model="compact")
    for kwargs in ({"tile": 4}, {"tile": 16, "overlap": 9}, {"tile": "big"}, {"overlap": -1}):
        with pytest.raises(ImageError):
            accel.upscale_image(img, model, **kwargs)
    with pytest.raises(ImageError, match="array must"):
        accel.upscale_image(np.zeros((8, 8, 5)), model)
