"""Read PyTorch checkpoint files (zip and legacy formats) without torch and without running pickle code.

Tensors come back as numpy arrays, zero-copy views of a memory map where the layout allows it.
Every size in the file is checked against the file's real size before anything is allocated.
"""
from __future__ import annotations

import mmap
import os
import struct
import zipfile
import zlib

import numpy as np

from reference.weights import widen_bfloat16

from .safe_pickle import BASE_ALLOWED, Global, UnsafePickleError, loads


class CheckpointError(ValueError):
    """A file that is not a readable tensor checkpoint (the converter's one error type)."""


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
# Caps on what a zip checkpoint may make us read (its data.pkl is ~100 KB for the official model): a
# member compressed 600:1 must not expand into gigabytes before anything is checked.
MAX_PICKLE_BYTES = 64 << 20
MAX_ZIP_MEMBERS = 100_000
LEGACY_PROTOCOL = 1001

# Storage classes -> numpy dtype ('bfloat16' is widened by hand: numpy has no bfloat16).
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class StorageType:
    def __init__(self, name):
        self.name, self.dtype = name, STORAGE_DTYPES[name]

    @property
    def itemsize(self):
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize


class Storage:
    """A typed view of raw bytes: the flat array of elements a tensor indexes into."""

    def __init__(self, raw: np.ndarray, stype: StorageType):
        self.stype = stype
        if stype.dtype == "bfloat16":
            self.array = widen_bfloat16(raw)
        else:
            self.array = raw.view(np.dtype(stype.dtype).newbyteorder("<"))


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    if not isinstance(storage, Storage):
        raise UnsafePickleError("tensor rebuild without a storage")
    size, stride = tuple(size), tuple(stride)
    if not all(isinstance(v, int) and v >= 0 for v in (offset, *size, *stride)) or len(size) != len(stride):
        raise CheckpointError(f"bad tensor geometry: offset {offset}, size {size}, stride {stride}")
    flat = storage.array
    if any(s == 0 for s in size):
        return np.zeros(size, flat.dtype)
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if extent > flat.size:
        raise CheckpointError(f"tensor of size {size}, stride {stride}, offset {offset} reaches element "
                              f"{extent} of a storage of {flat.size}")
    item = flat.itemsize
    return np.lib.stride_tricks.as_strided(flat[offset:], size, tuple(s * item for s in stride), writeable=False)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    if not isinstance(data, np.ndarray):
        raise UnsafePickleError("parameter rebuild without a tensor")
    return data


ALLOWED = dict(BASE_ALLOWED)
ALLOWED.update({
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
})
for _name in STORAGE_DTYPES:
    ALLOWED[("torch", _name)] = (lambda n: lambda *a: StorageType(n))(_name)


def _storage_type(obj) -> StorageType:
    # The storage class arrives as an allowlisted global: resolve it without calling anything else.
    if isinstance(obj, Global) and obj.module == "torch" and obj.name in STORAGE_DTYPES:
        return StorageType(obj.name)
    raise UnsafePickleError(f"persistent id names {obj!r}, not a torch storage class")


def _check_pid(pid, lengths):
    if not isinstance(pid, tuple) or len(pid) not in lengths or pid[0] != "storage":
        raise UnsafePickleError(f"refusing persistent id {str(pid)[:80]}: only tensor storages are allowed")


def _map(path):
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError("empty file")
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), size


def read_checkpoint(path):
    """The unpickled object of a .pt/.pth file, tensors as numpy arrays. Raises CheckpointError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError("no such file")
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        return _read_legacy(path)
    except (UnsafePickleError, CheckpointError):
        raise
    except (zipfile.BadZipFile, zlib.error, struct.error, ValueError, KeyError, IndexError, TypeError,
            OverflowError, EOFError, RecursionError, MemoryError, RuntimeError, NotImplementedError) as e:
        raise CheckpointError(f"corrupt checkpoint ({type(e).__name__}: {e})") from None


def _read_zip(path):
    buf, size = _map(path)
    zf = zipfile.ZipFile(path)
    infos = {i.filename: i for i in zf.infolist()}
    if len(infos) > MAX_ZIP_MEMBERS:
        raise CheckpointError(f"zip with {len(infos)} members: not a PyTorch checkpoint")
    for info in infos.values():
        if info.flag_bits & 0x1:
            raise CheckpointError(f"zip member {info.filename} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"zip member {info.filename} uses compression method {info.compress_type} "
                                  "(PyTorch writes stored members)")
    names = list(infos)
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise CheckpointError("zip file without exactly one <folder>/data.pkl: not a PyTorch checkpoint")
    root = pkl[0].split("/")[0]
    byteorder = "little"
    if f"{root}/byteorder" in names:
        byteorder = _small_member(zf, infos[f"{root}/byteorder"], 16).decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"unknown byte order {byteorder[:20]!r}")
    storages = {}

    def persistent_load(pid):
        _check_pid(pid, (5,))
        _, stype_obj, key, _location, numel = pid
        stype = _storage_type(stype_obj)
        key = str(key)
        if key not in storages:
            info = infos.get(f"{root}/data/{key}")
            if info is None:
                raise CheckpointError(f"storage {key} missing from the zip")
            nbytes = numel * stype.itemsize
            if not isinstance(numel, int) or numel < 0 or nbytes > info.file_size:
                raise CheckpointError(f"storage {key} claims {numel} elements; the file holds {info.file_size} bytes")
            raw = _zip_member(zf, buf, size, info)[:nbytes]
            if byteorder == "big":
                big = np.dtype(np.uint16 if stype.dtype == "bfloat16" else stype.dtype).newbyteorder(">")
                raw = raw.view(big).astype(big.newbyteorder("<")).view(np.uint8)
            storages[key] = Storage(raw, stype)
        return storages[key]

    data = _small_member(zf, infos[pkl[0]], MAX_PICKLE_BYTES)
    obj, _ = loads(data, ALLOWED, persistent_load)
    return obj


def _small_member(zf, info, limit: int) -> bytes:
    """A member that must be small (the pickle, the byte order): its declared size is checked first and
    decompression never produces more than that (zipfile stops at the declared size, then checks the CRC)."""
    if info.file_size > limit:
        raise CheckpointError(f"zip member {info.filename} is {info.file_size:,} bytes (at most {limit:,} expected)")
    with zf.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise CheckpointError(f"zip member {info.filename} is larger than it claims")
    return data


def _zip_member(zf, buf, size, info) -> np.ndarray:
    """The bytes of one zip member: a zero-copy view of the memory map when stored uncompressed."""
    if info.compress_type == zipfile.ZIP_STORED:
        header = buf[info.header_offset:info.header_offset + 30]
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise CheckpointError("bad zip local header")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        if start + info.file_size > size:
            raise CheckpointError("zip member runs past the end of the file")
        return np.frombuffer(buf, np.uint8, info.file_size, start)
    if info.file_size > 4 * size + (1 << 20):
        raise CheckpointError("compressed zip member claims an implausible size")
    return np.frombuffer(zf.read(info.filename), np.uint8)


def _read_legacy(path):
    buf, size = _map(path)
    no_pid = lambda pid: (_ for _ in ()).throw(UnsafePickleError("unexpected persistent id in a header"))
    try:
        magic, pos = loads(buf, {}, no_pid, 0)
    except UnsafePickleError as e:
        raise CheckpointError(f"not a PyTorch checkpoint (no legacy magic number: {e})") from None
    if magic != LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (wrong magic number)")
    protocol, pos = loads(buf, {}, no_pid, pos)
    if protocol != LEGACY_PROTOCOL:
        raise CheckpointError(f"unsupported legacy protocol version {protocol!r}")
    _sys_info, pos = loads(buf, {}, no_pid, pos)

    wanted = {}   # root key -> (StorageType, numel)
    views = []    # (Storage placeholder, root key, offset, numel)

    class Pending:
        """A storage whose bytes come after the pickle: filled in once they are located."""
        def __init__(self, stype):
            self.stype, self.array = stype, None

    pending: dict = {}

    def persistent_load(pid):
        _check_pid(pid, (6,))
        _, stype_obj, root_key, _location, numel, view_metadata = pid
        stype = _storage_type(stype_obj)
        root_key = str(root_key)
        if not isinstance(numel, int) or numel < 0 or numel * stype.itemsize > size:
            raise CheckpointError(f"storage {root_key} claims {numel} elements in a {size}-byte file")
        if root_key not in pending:
            wanted[root_key] = (stype, numel)
            pending[root_key] = Pending(stype)
        if view_metadata is None:
            return pending[root_key]
        view_key, offset, view_numel = view_metadata
        view = Pending(stype)
        views.append((view, root_key, offset, view_numel))
        return view

    # Tensors need their storages' bytes, which come after this pickle: rebuild lazily.
    lazy = []

    def lazy_rebuild(storage, offset, size_, stride, *rest):
        placeholder = _Lazy(storage, offset, size_, stride)
        lazy.append(placeholder)
        return placeholder

    allowed = dict(ALLOWED)
    allowed[("torch._utils", "_rebuild_tensor")] = lazy_rebuild
    allowed[("torch._utils", "_rebuild_tensor_v2")] = lazy_rebuild
    allowed[("torch._utils", "_rebuild_parameter")] = lambda data, *a: data
    allowed[("torch._utils", "_rebuild_parameter_with_state")] = lambda data, *a: data
    obj, pos = loads(buf, allowed, persistent_load, pos)
    keys, pos = loads(buf, {}, no_pid, pos)
    if not isinstance(keys, list):
        raise CheckpointError("legacy storage key list missing")
    for key in keys:
        if pos + 8 > size:
            raise CheckpointError("file truncated in the storage data")
        (numel,) = struct.unpack("<q", buf[pos:pos + 8])
        pos += 8
        key = str(key)
        if key not in wanted:
            raise CheckpointError(f"storage {key} is not used by any tensor")
        stype, expected = wanted[key]
        nbytes = numel * stype.itemsize
        if numel != expected or numel < 0 or pos + nbytes > size:
            raise CheckpointError(f"storage {key}: {numel} elements at byte {pos} do not fit a {size}-byte file")
        pending[key].array = Storage(np.frombuffer(buf, np.uint8, nbytes, pos), stype).array
        pos += nbytes
    missing = [k for k, p in pending.items() if p.array is None]
    if missing:
        raise CheckpointError(f"storages without data: {missing[:5]}")
    for view, root_key, offset, view_numel in views:
        root = pending[root_key].array
        if not (isinstance(offset, int) and isinstance(view_numel, int) and 0 <= offset
                and offset + view_numel <= root.size):
            raise CheckpointError(f"storage view {offset}+{view_numel} outside storage {root_key}")
        view.array = root[offset:offset + view_numel]
    return _resolve(obj)


class _Lazy:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)

    def build(self):
        storage, offset, size, stride = self.args
        if not hasattr(storage, "array") or storage.array is None:
            raise UnsafePickleError("tensor rebuild without a storage")
        s = Storage.__new__(Storage)
        s.stype, s.array = storage.stype, storage.array
        return _rebuild_tensor(s, offset, size, stride)


def _resolve(obj, depth=0):
    """Replace lazy tensors by arrays in the unpickled containers."""
    if depth > 100:
        raise CheckpointError("containers nested too deeply")
    if isinstance(obj, _Lazy):
        return obj.build()
    if isinstance(obj, dict):
        out = type(obj)()
        for k, v in obj.items():
            out[k] = _resolve(v, depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v, depth + 1) for v in obj)
    return obj
