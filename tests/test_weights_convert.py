"""weights_convert against files written by torch.save itself: bit-identical tensors, detected config,
the same output as torch; fuzzed files end in our own error; malicious pickles never run."""
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
import torch
from conftest import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from reference import RCANConfig
from reference.weights import init_weights, load_weights
from tools import torch_rcan
from weights_convert import ConvertError, load_checkpoint
from weights_convert.__main__ import main as convert_main

CONFIGS = [RCANConfig(scale=s, n_resgroups=g, n_resblocks=b, n_feats=f, reduction=r)
           for s, g, b, f, r in [(2, 2, 3, 16, 4), (3, 1, 2, 8, 2), (4, 2, 1, 12, 3), (8, 1, 1, 8, 8)]]


def save(obj, path, legacy):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def basicsr_state(model: torch_rcan.RCAN, config):
    """The official module's tensors renamed to BasicSR's RCAN keys (basicsr/archs/rcan_arch.py)."""
    out = {}
    for k, v in model.state_dict().items():
        parts = k.split(".")
        if k.startswith(("sub_mean", "add_mean")):
            continue  # BasicSR keeps its mean outside the state dict
        if k.startswith("head.0"):
            nk = "conv_first." + parts[-1]
        elif k.startswith("tail.1"):
            nk = "conv_last." + parts[-1]
        elif k.startswith("tail.0"):
            nk = f"upsample.{parts[2]}.{parts[-1]}"
        elif parts[0] == "body" and int(parts[1]) == config.n_resgroups:
            nk = "conv_after_body." + parts[-1]
        elif int(parts[3]) == config.n_resblocks:
            nk = f"body.{parts[1]}.conv.{parts[-1]}"
        elif parts[5] == "3":
            nk = f"body.{parts[1]}.residual_group.{parts[3]}.rcab.3.attention.{int(parts[7]) + 1}.{parts[-1]}"
        else:
            nk = f"body.{parts[1]}.residual_group.{parts[3]}.rcab.{parts[5]}.{parts[-1]}"
        out[nk] = v
    return out


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"x{c.scale}")
@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
@pytest.mark.parametrize("wrap", [None, "state_dict", "model_state_dict", "module.", "netG."])
def test_official_files_round_trip(tmp_path, config, legacy, wrap):
    torch.manual_seed(config.scale)
    model = torch_rcan.RCAN(config)
    for p in model.parameters():  # make sub_mean/add_mean drift like trained checkpoints do
        p.data += 0.001 * torch.randn_like(p)
    sd = model.state_dict()
    obj = sd
    if wrap in ("state_dict", "model_state_dict"):
        obj = {wrap: sd, "epoch": 7, "optimizer": {"lr": 1e-4}}
    elif wrap:
        obj = {wrap + k: v for k, v in sd.items()}
    path = save(obj, tmp_path / "m.pt", legacy)
    weights, found = load_checkpoint(path)
    assert found == config
    assert list(weights) == list(sd.keys())   # official order too
    for k, v in sd.items():
        assert weights[k].tobytes() == v.numpy().tobytes(), k   # bit-identical

    # canonical file -> same output as torch
    out = tmp_path / "m.safetensors"
    assert convert_main([str(path), "-o", str(out)]) == 0
    w2, c2 = load_weights(out)
    lr = np.random.default_rng(0).uniform(0, 255, (7, 9, 3)).astype(np.float32)
    assert_close(reference.forward(w2, c2, lr), torch_rcan.run(model.eval(), lr), 1e-3, 1e-6, "converted vs torch")


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
@pytest.mark.parametrize("key", ["params", "params_ema"])
def test_basicsr_layout_gives_the_same_image(tmp_path, legacy, key):
    config = CONFIGS[0]
    torch.manual_seed(1)
    model = torch_rcan.RCAN(config).eval()
    path = save({key: basicsr_state(model, config)}, tmp_path / "b.pth", legacy)
    weights, found = load_checkpoint(path)
    assert found == config
    lr = np.random.default_rng(1).uniform(0, 255, (6, 5, 3)).astype(np.float32)
    # BasicSR: x in [0, 1], (x - mean)·255 — the same as the official 0..255 mean shift.
    assert_close(reference.forward(weights, found, lr), torch_rcan.run(model, lr), 1e-3, 1e-6, "basicsr")


def test_basicsr_img_range_1_is_converted_exactly(tmp_path):
    config = CONFIGS[1]
    torch.manual_seed(2)
    model = torch_rcan.RCAN(config).eval()
    path = save({"params": basicsr_state(model, config)}, tmp_path / "b.pth", False)
    weights, found = load_checkpoint(path, img_range=1.0)
    lr = np.random.default_rng(2).uniform(0, 255, (5, 4, 3)).astype(np.float32)
    # BasicSR with img_range 1: y = net((x/255 - mean)) ; out = 255·(y + mean).
    mean = torch.tensor(config.rgb_mean).view(1, 3, 1, 1)
    x = torch.from_numpy(lr).permute(2, 0, 1)[None] / 255
    with torch.no_grad():
        h = model.head((x - mean))
        r = model.body(h) + h
        y = model.tail(r)
    expected = (255 * (y + mean))[0].permute(1, 2, 0).numpy()
    assert_close(reference.forward(weights, found, lr), expected, 2e-3, 1e-5, "basicsr img_range 1")


def test_safetensors_sources(tmp_path):
    from safetensors.numpy import save_file
    config = CONFIGS[2]
    weights = init_weights(config, 5)
    bare = tmp_path / "bare.safetensors"
    save_file(weights, str(bare))                 # official names, no metadata
    w, c = load_checkpoint(bare)
    assert c == config and all(np.array_equal(w[k], weights[k]) for k in weights)
    canon = tmp_path / "canon.safetensors"
    reference.save_weights(canon, weights, config)
    assert load_checkpoint(canon)[1] == config


def test_dtypes_and_views(tmp_path):
    """float16/bfloat16/float64 storages, non-contiguous views and offsets come out right."""
    from weights_convert import read_checkpoint
    big = torch.randn(200)
    d = {"f16": torch.randn(3, 4).half(), "bf16": torch.randn(5).bfloat16(), "f64": torch.randn(2, 3).double(),
         "t": torch.randn(4, 6).t(), "view": big[17:41].view(4, 6), "i64": torch.arange(9)[3:], "b": torch.ones(3).bool(),
         "p": torch.nn.Parameter(torch.randn(3))}
    for legacy in (True, False):
        obj = read_checkpoint(save(d, tmp_path / f"d{legacy}.pt", legacy))
        for k, v in d.items():
            ref = v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
            np.testing.assert_array_equal(obj[k], ref, err_msg=k)
            assert obj[k].shape == ref.shape


# --- errors ----------------------------------------------------------------------------------------

def test_not_an_rcan(tmp_path):
    config = CONFIGS[0]
    sd = torch_rcan.RCAN(config).state_dict()
    sd["tail.0.0.weight"] = torch.zeros(5 * 16, 16, 3, 3)
    del sd["body.1.body.0.body.2.bias"]
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(ConvertError) as e:
        load_checkpoint(save(sd, tmp_path / "bad.pt", False))
    msg = str(e.value)
    assert "80 output channels" in msg and "fit no scale" in msg
    sd["tail.0.0.weight"] = torch.zeros(64, 16, 3, 3)
    with pytest.raises(ConvertError) as e:
        load_checkpoint(save(sd, tmp_path / "bad2.pt", False))
    msg = str(e.value)
    assert "1 unexpected key(s): extra.weight" in msg and "1 missing key(s): body.1.body.0.body.2.bias" in msg


def test_cli_errors(tmp_path, capsys):
    from weights_convert.__main__ import main
    (tmp_path / "empty.pt").write_bytes(b"")
    assert main([str(tmp_path / "empty.pt"), "--info"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: {tmp_path / 'empty.pt'}: ")
    config = CONFIGS[3]
    src = save(torch_rcan.RCAN(config).state_dict(), tmp_path / "ok.pt", True)
    dst = tmp_path / "out.safetensors"
    dst.write_bytes(b"keep me")
    assert main([str(src), "-o", str(dst)]) == 2 and dst.read_bytes() == b"keep me"   # no overwrite
    assert main([str(src), "-o", str(dst), "--force"]) == 0 and load_weights(dst)[1] == config
    assert main([str(tmp_path / "missing.pt"), "--info"]) == 2


# --- fuzzing ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    sd = torch_rcan.RCAN(RCANConfig(n_resgroups=1, n_resblocks=1, n_feats=8, reduction=2)).state_dict()
    return {fmt: save(sd, d / f"{fmt}.pt", fmt == "legacy").read_bytes() for fmt in ("legacy", "zip")}


@settings(max_examples=150)
@given(fmt=st.sampled_from(["legacy", "zip"]), data=st.data())
def test_fuzzed_files_fail_cleanly(valid_files, tmp_path_factory, fmt, data):
    blob = bytearray(valid_files[fmt])
    kind = data.draw(st.sampled_from(["truncate", "flip", "insert", "huge"]))
    if kind == "truncate":
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    elif kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] ^= data.draw(st.integers(1, 255))
    elif kind == "insert":
        i = data.draw(st.integers(0, len(blob)))
        blob[i:i] = data.draw(st.binary(min_size=1, max_size=16))
    else:  # a huge size field somewhere: an int64 count or a 4-byte length
        i = data.draw(st.integers(0, len(blob) - 8))
        blob[i:i + 8] = struct.pack("<q", data.draw(st.sampled_from([2**40, 2**62, -1, 10**10])))
    path = tmp_path_factory.mktemp("f") / "fuzz.pt"
    path.write_bytes(bytes(blob))
    try:
        load_checkpoint(path)
    except ConvertError:
        pass   # our own error type, with a message; anything else fails the test


# --- malicious pickles -----------------------------------------------------------------------------

class Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def marker_payloads(marker):
    cmd = f"touch {marker}"
    return {
        "os.system": Payload(os.system, cmd),
        "subprocess": Payload(__import__("subprocess").call, ["touch", str(marker)]),
        "eval": Payload(eval, f"open({str(marker)!r}, 'w')"),
        "exec": Payload(exec, f"open({str(marker)!r}, 'w')"),
    }


def _unicode(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _getattr_chain(marker) -> bytes:
    """getattr(__import__('os'), 'system')('touch marker'), as raw opcodes."""
    return (b"\x80\x02cbuiltins\ngetattr\n(cbuiltins\n__import__\n(" + _unicode("os") + b"tR" + _unicode("system")
            + b"tR(" + _unicode(f"touch {marker}") + b"tR.")


def _legacy_container(obj_pickle: bytes) -> bytes:
    """A legacy torch file whose object pickle is the given bytes."""
    f = io.BytesIO()
    for head in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(head, f, protocol=2)
    f.write(obj_pickle)
    pickle.dump([], f, protocol=2)
    return f.getvalue()


def _zip_container(obj_pickle: bytes) -> bytes:
    f = io.BytesIO()
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("archive/data.pkl", obj_pickle)
        z.writestr("archive/version", "3\n")
    return f.getvalue()


def _hidden_in_rebuild(marker) -> bytes:
    """A tensor rebuild whose backward_hooks argument is a REDUCE of os.system."""
    p = pickle.dumps(Payload(os.system, f"touch {marker}"), protocol=2)
    body = p[2:-1]  # without PROTO and STOP
    return (b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02(K\x00K\x00)K\x00" + body
            + b"tR" + b"s.")


def _non_storage_pid() -> bytes:
    return b"\x80\x02}" + _unicode("w") + b"(" + _unicode("subvert") + _unicode("id") + b"tQs."


@pytest.mark.parametrize("container", ["legacy", "zip"])
def test_malicious_pickles_are_refused_and_never_run(tmp_path, container):
    marker = tmp_path / "pwned"
    pickles = {name: pickle.dumps({"w": p}, protocol=2) for name, p in marker_payloads(marker).items()}
    pickles["getattr"] = _getattr_chain(marker)
    pickles["in-rebuild"] = _hidden_in_rebuild(marker)
    pickles["pid"] = _non_storage_pid()
    wrap = _legacy_container if container == "legacy" else _zip_container
    for name, body in pickles.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(wrap(body))
        with pytest.raises(ConvertError) as e:
            load_checkpoint(path)
        msg = str(e.value)
        if name in ("os.system", "in-rebuild"):
            assert "refusing global posix.system" in msg or "refusing global os.system" in msg or "refusing global nt.system" in msg, msg
        elif name == "pid":
            assert "persistent id" in msg
        else:
            assert "refusing global" in msg, msg
        assert not marker.exists(), f"{name}: the payload ran"


# --- the full official-size checkpoint -------------------------------------------------------------

@pytest.fixture(scope="module")
def full_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("full") / "RCAN_BIX2.pt"
    torch.manual_seed(0)
    return save(torch_rcan.RCAN(RCANConfig.official(2)).state_dict(), path, legacy=True)


def test_full_size_conversion_memory(full_checkpoint):
    """Peak extra memory of a conversion in a fresh process stays under 2× the file size."""
    import json
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "tools.convert_bench", str(full_checkpoint)],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    print(result)
    assert result["values"] == 15_444_667
    assert result["peak_extra_over_file"] < 2.0


def test_bench_full_size_conversion(benchmark, full_checkpoint, tmp_path):
    """pytest --benchmark-enable -k bench_full_size: the official ×2 checkpoint (15.4 M values)."""
    from weights_convert import write_canonical
    out = tmp_path / "o.safetensors"
    c = benchmark(lambda: write_canonical(full_checkpoint, out, force=True))
    assert c.config == RCANConfig.official(2)
