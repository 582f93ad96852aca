"""A pickle reader that cannot run code: an opcode interpreter with an allowlist of globals.

Python's pickle executes whatever a file asks for (any importable callable, through REDUCE, BUILD,
INST, OBJ, NEWOBJ...). This interpreter never imports anything: GLOBAL / STACK_GLOBAL resolve only the
names in ALLOWED, to our own pure functions; any other name is refused with an error naming it, before
anything is called. REDUCE and NEWOBJ call only those functions; BUILD only fills dicts; persistent
ids are handed to the caller's `persistent_load`, which accepts storages only.
The approach is that of torch's own weights_only loader (torch/_weights_only_unpickler.py), with the
stdlib's opcode constants.

Resources are bounded too: dict keys and set members must be flat (strings, numbers, bytes, None or
tuples of those), since hashing a tuple nested a million deep overflows the C stack; the memo, integer
and string sizes are capped by the data itself or by explicit limits.
"""
from __future__ import annotations

import codecs
import pickle
import struct


class UnsafePickleError(ValueError):
    """The pickle asks for something outside the allowlist (or is malformed)."""


class Global:
    """A resolved allowlisted global: a name and the function that stands in for it."""

    def __init__(self, module: str, name: str, func):
        self.module, self.name, self.func = module, name, func

    def __repr__(self):
        return f"{self.module}.{self.name}"


class StateDict(dict):
    """Stands in for collections.OrderedDict (insertion-ordered like any dict)."""


def _ordered_dict(*args):
    if len(args) > 1:
        raise UnsafePickleError("OrderedDict called with more than one argument")
    d = StateDict()
    if args:
        d.update(args[0])
    return d


def _reconstruct_dict(*args):
    return StateDict()


FLAT = (str, int, float, bool, bytes, type(None))


def _hashable(key, op: str):
    """A dict key or set member: flat, so hashing it cannot recurse (a deeply nested tuple would
    overflow the C stack in hash())."""
    if isinstance(key, FLAT) or (isinstance(key, tuple) and all(isinstance(k, FLAT) for k in key)):
        return key
    raise UnsafePickleError(f"{op}: refusing a {type(key).__name__} key (only strings, numbers and flat tuples)")


class _Machine:
    """The pickle virtual machine, restricted: one method per opcode (or family), looked up by opcode."""

    def __init__(self, data, allowed: dict, persistent_load, start: int, max_memo: int):
        self.mv, self.pos, self.allowed, self.persistent_load = memoryview(data), start, allowed, persistent_load
        self.stack: list = []
        self.metastack: list = []
        self.memo: dict = {}
        self.max_memo = max_memo

    # -- reading the stream -------------------------------------------------------------------------
    def read(self, k: int):
        if k < 0 or self.pos + k > len(self.mv):
            raise UnsafePickleError(f"pickle truncated at byte {self.pos} (needs {k} more)")
        out = self.mv[self.pos:self.pos + k]
        self.pos += k
        return out

    def byte(self) -> int:
        return self.read(1)[0]

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def readline(self) -> bytes:
        end = bytes(self.mv[self.pos:min(len(self.mv), self.pos + 4096)]).find(b"\n")
        if end < 0:
            raise UnsafePickleError(f"pickle truncated at byte {self.pos} (no newline)")
        line = bytes(self.mv[self.pos:self.pos + end])
        self.pos += end + 1
        return line

    # -- the stack ----------------------------------------------------------------------------------
    def push(self, value):
        self.stack.append(value)

    def pop(self):
        if not self.stack:
            raise UnsafePickleError("pickle stack underflow")
        return self.stack.pop()

    def top(self):
        if not self.stack:
            raise UnsafePickleError("pickle stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> list:
        if not self.metastack:
            raise UnsafePickleError("pickle has no MARK to pop")
        items, self.stack = self.stack, self.metastack.pop()
        return items

    def run(self):
        while True:
            op = self.read(1).tobytes()
            if op == pickle.STOP:
                return self.pop(), self.pos
            handler = _DISPATCH.get(op)
            if handler is None:
                raise UnsafePickleError(f"refusing pickle opcode {op!r} at byte {self.pos - 1}")
            handler(self, op)

    # -- opcodes ------------------------------------------------------------------------------------
    def skip(self, op):                                     # PROTO n, FRAME size
        self.read(1 if op == pickle.PROTO else 8)

    def mark(self, op):
        self.metastack.append(self.stack)
        self.stack = []

    def empty(self, op):
        self.push({pickle.EMPTY_DICT: dict, pickle.EMPTY_LIST: list, pickle.EMPTY_TUPLE: tuple,
                   pickle.EMPTY_SET: set}[op]())

    def tuple_n(self, op):                                  # TUPLE1..3
        k = {pickle.TUPLE1: 1, pickle.TUPLE2: 2, pickle.TUPLE3: 3}[op]
        if len(self.stack) < k:
            raise UnsafePickleError("pickle stack underflow")
        items = tuple(self.stack[-k:])
        del self.stack[-k:]
        self.push(items)

    def from_mark(self, op):                                # TUPLE, LIST, DICT, FROZENSET
        items = self.pop_mark()
        if op == pickle.TUPLE:
            self.push(tuple(items))
        elif op == pickle.LIST:
            self.push(items)
        elif op == pickle.DICT:
            self.push({_hashable(k, "DICT"): v for k, v in zip(items[::2], items[1::2])})
        else:
            self.push(frozenset(_hashable(k, "FROZENSET") for k in items))

    def append(self, op):                                   # APPEND, APPENDS
        items = [self.pop()] if op == pickle.APPEND else self.pop_mark()
        _as(self.top(), list, "APPEND").extend(items)

    def setitems(self, op):                                 # SETITEM, SETITEMS
        if op == pickle.SETITEM:
            value, key = self.pop(), self.pop()
            items = [key, value]
        else:
            items = self.pop_mark()
        d = _as(self.top(), dict, "SETITEM")
        for i in range(0, len(items) - 1, 2):
            d[_hashable(items[i], "SETITEM")] = items[i + 1]

    def additems(self, op):
        items = self.pop_mark()
        _as(self.top(), set, "ADDITEMS").update(_hashable(k, "ADDITEMS") for k in items)

    def discard(self, op):                                  # POP, POP_MARK
        self.pop() if op == pickle.POP else self.pop_mark()

    def dup(self, op):
        self.push(self.top())

    def put(self, op):                                      # BINPUT, LONG_BINPUT, PUT, MEMOIZE
        key = {pickle.BINPUT: self.byte, pickle.LONG_BINPUT: lambda: self.unpack("<I"),
               pickle.PUT: lambda: _int(self.readline()), pickle.MEMOIZE: lambda: len(self.memo)}[op]()
        if len(self.memo) >= self.max_memo:
            raise UnsafePickleError("pickle memo too large")
        self.memo[key] = self.top()

    def get(self, op):                                      # BINGET, LONG_BINGET, GET
        key = {pickle.BINGET: self.byte, pickle.LONG_BINGET: lambda: self.unpack("<I"),
               pickle.GET: lambda: _int(self.readline())}[op]()
        if key not in self.memo:
            raise UnsafePickleError(f"pickle memo key {key} missing")
        self.push(self.memo[key])

    def global_(self, op):                                  # GLOBAL, STACK_GLOBAL
        if op == pickle.GLOBAL:
            module = self.readline().decode("utf-8", "replace")
            name = self.readline().decode("utf-8", "replace")
        else:
            name, module = self.pop(), self.pop()
            if not isinstance(name, str) or not isinstance(module, str):
                raise UnsafePickleError("STACK_GLOBAL needs two strings")
        func = self.allowed.get((module, name))
        if func is None:
            raise UnsafePickleError(f"refusing global {module}.{name}: not in the allowlist of tensor checkpoints")
        self.push(Global(module, name, func))

    def call(self, op):                                     # REDUCE, NEWOBJ: only allowlisted functions
        args, target = self.pop(), self.pop()
        if not isinstance(target, Global):
            raise UnsafePickleError(f"refusing to call a {type(target).__name__} (only allowlisted globals)")
        if not isinstance(args, tuple):
            raise UnsafePickleError("REDUCE arguments are not a tuple")
        self.push(target.func(*args))

    def build(self, op):
        self.pop()   # the state
        # Only the OrderedDict of a state_dict gets state (its `_metadata` attribute): ignored.
        if not isinstance(self.top(), StateDict):
            raise UnsafePickleError(f"refusing BUILD on a {type(self.top()).__name__}")

    def persid(self, op):                                   # BINPERSID, PERSID
        pid = self.pop() if op == pickle.BINPERSID else self.readline().decode("ascii", "replace")
        self.push(self.persistent_load(pid))

    def integer(self, op):
        if op == pickle.BININT:
            self.push(self.unpack("<i"))
        elif op == pickle.BININT1:
            self.push(self.byte())
        elif op == pickle.BININT2:
            self.push(self.unpack("<H"))
        elif op == pickle.LONG1:
            self.push(int.from_bytes(self.read(self.byte()), "little", signed=True))
        elif op == pickle.LONG4:
            k = self.unpack("<i")
            if k > 64:
                raise UnsafePickleError(f"refusing a {k}-byte integer")
            self.push(int.from_bytes(self.read(k), "little", signed=True))
        elif op == pickle.INT:
            line = self.readline()
            self.push(False if line == b"00" else True if line == b"01" else _int(line))
        else:                                               # LONG
            self.push(_int(self.readline().rstrip(b"L")))

    def constant(self, op):                                 # NONE, NEWTRUE, NEWFALSE, floats
        if op == pickle.BINFLOAT:
            self.push(self.unpack(">d"))
        elif op == pickle.FLOAT:
            try:
                self.push(float(self.readline()))
            except ValueError:
                raise UnsafePickleError("bad FLOAT literal") from None
        else:
            self.push({pickle.NONE: None, pickle.NEWTRUE: True, pickle.NEWFALSE: False}[op])

    def text(self, op):
        if op == pickle.BINUNICODE:
            self.push(_utf8(self.read(self.unpack("<I"))))
        elif op == pickle.SHORT_BINUNICODE:
            self.push(_utf8(self.read(self.byte())))
        elif op == pickle.BINUNICODE8:
            self.push(_utf8(self.read(self.unpack("<Q"))))
        elif op == pickle.UNICODE:
            self.push(codecs.decode(self.readline(), "raw_unicode_escape"))
        elif op == pickle.SHORT_BINSTRING:
            self.push(bytes(self.read(self.byte())).decode("latin-1"))
        elif op == pickle.BINSTRING:
            self.push(bytes(self.read(self.unpack("<i"))).decode("latin-1"))
        else:                                               # STRING
            self.push(_string(self.readline()))

    def binary(self, op):
        size = {pickle.SHORT_BINBYTES: self.byte, pickle.BINBYTES: lambda: self.unpack("<I"),
                pickle.BINBYTES8: lambda: self.unpack("<Q")}[op]()
        self.push(bytes(self.read(size)))


_DISPATCH = {}
for _method, _ops in (
        (_Machine.skip, "PROTO FRAME"), (_Machine.mark, "MARK"),
        (_Machine.empty, "EMPTY_DICT EMPTY_LIST EMPTY_TUPLE EMPTY_SET"), (_Machine.tuple_n, "TUPLE1 TUPLE2 TUPLE3"),
        (_Machine.from_mark, "TUPLE LIST DICT FROZENSET"), (_Machine.append, "APPEND APPENDS"),
        (_Machine.setitems, "SETITEM SETITEMS"), (_Machine.additems, "ADDITEMS"), (_Machine.discard, "POP POP_MARK"),
        (_Machine.dup, "DUP"), (_Machine.put, "BINPUT LONG_BINPUT PUT MEMOIZE"), (_Machine.get, "BINGET LONG_BINGET GET"),
        (_Machine.global_, "GLOBAL STACK_GLOBAL"), (_Machine.call, "REDUCE NEWOBJ"), (_Machine.build, "BUILD"),
        (_Machine.persid, "BINPERSID PERSID"), (_Machine.integer, "BININT BININT1 BININT2 LONG1 LONG4 INT LONG"),
        (_Machine.constant, "BINFLOAT FLOAT NONE NEWTRUE NEWFALSE"),
        (_Machine.text, "BINUNICODE SHORT_BINUNICODE BINUNICODE8 UNICODE SHORT_BINSTRING BINSTRING STRING"),
        (_Machine.binary, "SHORT_BINBYTES BINBYTES BINBYTES8")):
    for _name in _ops.split():
        _DISPATCH[getattr(pickle, _name)] = _method


def loads(data, allowed: dict, persistent_load, start: int = 0, max_memo: int = 10_000_000):
    """Unpickle one object from data[start:]; returns (object, end offset).

    allowed: {(module, name): function}. persistent_load(pid) -> object.
    """
    try:
        return _Machine(data, allowed, persistent_load, start, max_memo).run()
    except RecursionError:
        raise UnsafePickleError("pickle nests too deeply") from None


def _as(obj, kind, op):
    if not isinstance(obj, kind):
        raise UnsafePickleError(f"{op} on a {type(obj).__name__}")
    return obj


def _int(line: bytes) -> int:
    try:
        return int(line)
    except ValueError:
        raise UnsafePickleError(f"bad integer {line[:20]!r}") from None


def _utf8(b) -> str:
    try:
        return bytes(b).decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as e:
        raise UnsafePickleError(f"bad UTF-8 string: {e}") from None


def _string(line: bytes) -> str:
    line = line.strip()
    if len(line) < 2 or line[:1] not in (b"'", b'"') or line[-1:] != line[:1]:
        raise UnsafePickleError("bad STRING literal")
    return codecs.escape_decode(line[1:-1])[0].decode("latin-1")


BASE_ALLOWED = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("builtins", "dict"): _reconstruct_dict,
}
