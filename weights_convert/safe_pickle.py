"""A pickle reader that cannot run code: an opcode interpreter with an allowlist of globals.

Python's pickle executes whatever a file asks for (any importable callable, through REDUCE, BUILD,
INST, OBJ, NEWOBJ...). This interpreter never imports anything: GLOBAL / STACK_GLOBAL resolve only the
names in ALLOWED, to our own pure functions; any other name is refused with an error naming it, before
anything is called. REDUCE and NEWOBJ call only those functions; BUILD only fills dicts; persistent
ids are handed to the caller's `persistent_load`, which accepts storages only.
The approach is that of torch's own weights_only loader (torch/_weights_only_unpickler.py).
"""
from __future__ import annotations

import codecs
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


# opcodes (pickle protocols 0-5) that checkpoints use


def loads(data, allowed: dict, persistent_load, start: int = 0, max_memo: int = 10_000_000):
    """Unpickle one object from data[start:]; returns (object, end offset).

    allowed: {(module, name): function}. persistent_load(pid) -> object.
    """
    mv = memoryview(data)
    n = len(mv)
    pos = start
    stack: list = []
    metastack: list = []
    memo: dict = {}

    def read(k):
        nonlocal pos
        if k < 0 or pos + k > n:
            raise UnsafePickleError(f"pickle truncated at byte {pos} (needs {k} more)")
        out = mv[pos:pos + k]
        pos += k
        return out

    def readline():
        nonlocal pos
        end = bytes(mv[pos:min(n, pos + 4096)]).find(b"\n")
        if end < 0:
            raise UnsafePickleError(f"pickle truncated at byte {pos} (no newline)")
        line = bytes(mv[pos:pos + end])
        pos += end + 1
        return line

    def pop_mark():
        nonlocal stack
        if not metastack:
            raise UnsafePickleError("pickle has no MARK to pop")
        items = stack
        stack = metastack.pop()
        return items

    def resolve(module, name):
        func = allowed.get((module, name))
        if func is None:
            raise UnsafePickleError(f"refusing global {module}.{name}: not in the allowlist of tensor checkpoints")
        return Global(module, name, func)

    def call(target, args):
        if not isinstance(target, Global):
            raise UnsafePickleError(f"refusing to call a {type(target).__name__} (only allowlisted globals)")
        if not isinstance(args, tuple):
            raise UnsafePickleError("REDUCE arguments are not a tuple")
        return target.func(*args)

    def top():
        if not stack:
            raise UnsafePickleError("pickle stack underflow")
        return stack[-1]

    def pop():
        if not stack:
            raise UnsafePickleError("pickle stack underflow")
        return stack.pop()

    def memo_put(key):
        if len(memo) >= max_memo:
            raise UnsafePickleError("pickle memo too large")
        memo[key] = top()

    def memo_get(key):
        if key not in memo:
            raise UnsafePickleError(f"pickle memo key {key} missing")
        stack.append(memo[key])

    while True:
        op = read(1)[0]
        if op == 0x80:                                   # PROTO
            read(1)
        elif op == 0x95:                                 # FRAME
            read(8)
        elif op == 0x2E:                                 # STOP '.'
            return pop(), pos
        elif op == 0x28:                                 # MARK '('
            metastack.append(stack)
            stack = []
        elif op == 0x7D:                                 # EMPTY_DICT '}'
            stack.append({})
        elif op == 0x5D:                                 # EMPTY_LIST ']'
            stack.append([])
        elif op == 0x29:                                 # EMPTY_TUPLE ')'
            stack.append(())
        elif op == 0x8F:                                 # EMPTY_SET
            stack.append(set())
        elif op == 0x74:                                 # TUPLE 't'
            items = tuple(pop_mark())  # pop first: pop_mark rebinds `stack`
            stack.append(items)
        elif op in (0x85, 0x86, 0x87):                   # TUPLE1..3
            k = op - 0x84
            if len(stack) < k:
                raise UnsafePickleError("pickle stack underflow")
            items = tuple(stack[-k:])
            del stack[-k:]
            stack.append(items)
        elif op == 0x6C:                                 # LIST 'l'
            items = pop_mark()
            stack.append(items)
        elif op == 0x64:                                 # DICT 'd'
            items = pop_mark()
            stack.append(dict(zip(items[::2], items[1::2])))
        elif op == 0x91:                                 # FROZENSET
            items = frozenset(pop_mark())
            stack.append(items)
        elif op == 0x61:                                 # APPEND 'a'
            value = pop()
            _as(top(), list, "APPEND").append(value)
        elif op == 0x65:                                 # APPENDS 'e'
            items = pop_mark()
            _as(top(), list, "APPENDS").extend(items)
        elif op == 0x73:                                 # SETITEM 's'
            value, key = pop(), pop()
            _as(top(), dict, "SETITEM")[key] = value
        elif op == 0x75:                                 # SETITEMS 'u'
            items = pop_mark()
            d = _as(top(), dict, "SETITEMS")
            for i in range(0, len(items) - 1, 2):
                d[items[i]] = items[i + 1]
        elif op == 0x90:                                 # ADDITEMS
            items = pop_mark()
            _as(top(), set, "ADDITEMS").update(items)
        elif op == 0x30:                                 # POP '0'
            pop()
        elif op == 0x31:                                 # POP_MARK '1'
            pop_mark()
        elif op == 0x32:                                 # DUP '2'
            stack.append(top())
        elif op == 0x71:                                 # BINPUT 'q'
            memo_put(read(1)[0])
        elif op == 0x72:                                 # LONG_BINPUT 'r'
            memo_put(struct.unpack("<I", read(4))[0])
        elif op == 0x70:                                 # PUT 'p'
            memo_put(int(readline()))
        elif op == 0x94:                                 # MEMOIZE
            memo_put(len(memo))
        elif op == 0x68:                                 # BINGET 'h'
            memo_get(read(1)[0])
        elif op == 0x6A:                                 # LONG_BINGET 'j'
            memo_get(struct.unpack("<I", read(4))[0])
        elif op == 0x67:                                 # GET 'g'
            memo_get(int(readline()))
        elif op == 0x63:                                 # GLOBAL 'c'
            module = readline().decode("utf-8", "replace")
            name = readline().decode("utf-8", "replace")
            stack.append(resolve(module, name))
        elif op == 0x93:                                 # STACK_GLOBAL
            name, module = pop(), pop()
            if not isinstance(name, str) or not isinstance(module, str):
                raise UnsafePickleError("STACK_GLOBAL needs two strings")
            stack.append(resolve(module, name))
        elif op == 0x52:                                 # REDUCE 'R'
            args = pop()
            target = pop()
            stack.append(call(target, args))
        elif op == 0x81:                                 # NEWOBJ
            args = pop()
            cls = pop()
            stack.append(call(cls, args))
        elif op == 0x62:                                 # BUILD 'b'
            pop()  # the state
            obj = top()
            # Only the OrderedDict of a state_dict gets state (its `_metadata` attribute): ignored.
            if not isinstance(obj, StateDict):
                raise UnsafePickleError(f"refusing BUILD on a {type(obj).__name__}")
        elif op == 0x51:                                 # BINPERSID 'Q'
            stack.append(persistent_load(pop()))
        elif op == 0x50:                                 # PERSID 'P'
            stack.append(persistent_load(readline().decode("ascii", "replace")))
        elif op == 0x4A:                                 # BININT 'J'
            stack.append(struct.unpack("<i", read(4))[0])
        elif op == 0x4B:                                 # BININT1 'K'
            stack.append(read(1)[0])
        elif op == 0x4D:                                 # BININT2 'M'
            stack.append(struct.unpack("<H", read(2))[0])
        elif op == 0x8A:                                 # LONG1
            stack.append(int.from_bytes(read(read(1)[0]), "little", signed=True))
        elif op == 0x8B:                                 # LONG4
            k = struct.unpack("<i", read(4))[0]
            if k > 64:
                raise UnsafePickleError(f"refusing a {k}-byte integer")
            stack.append(int.from_bytes(read(k), "little", signed=True))
        elif op == 0x49:                                 # INT 'I'
            line = readline()
            stack.append(False if line == b"00" else True if line == b"01" else _int(line))
        elif op == 0x4C:                                 # LONG 'L'
            stack.append(_int(readline().rstrip(b"L")))
        elif op == 0x47:                                 # BINFLOAT 'G'
            stack.append(struct.unpack(">d", read(8))[0])
        elif op == 0x46:                                 # FLOAT 'F'
            stack.append(float(readline()))
        elif op == 0x4E:                                 # NONE 'N'
            stack.append(None)
        elif op == 0x88:                                 # NEWTRUE
            stack.append(True)
        elif op == 0x89:                                 # NEWFALSE
            stack.append(False)
        elif op == 0x58:                                 # BINUNICODE 'X'
            stack.append(_utf8(read(struct.unpack("<I", read(4))[0])))
        elif op == 0x8C:                                 # SHORT_BINUNICODE
            stack.append(_utf8(read(read(1)[0])))
        elif op == 0x8D:                                 # BINUNICODE8
            stack.append(_utf8(read(struct.unpack("<Q", read(8))[0])))
        elif op == 0x56:                                 # UNICODE 'V'
            stack.append(codecs.decode(readline(), "raw_unicode_escape"))
        elif op == 0x55:                                 # SHORT_BINSTRING 'U'
            stack.append(bytes(read(read(1)[0])).decode("latin-1"))
        elif op == 0x54:                                 # BINSTRING 'T'
            stack.append(bytes(read(struct.unpack("<i", read(4))[0])).decode("latin-1"))
        elif op == 0x53:                                 # STRING 'S'
            stack.append(_string(readline()))
        elif op == 0x43:                                 # SHORT_BINBYTES 'C'
            stack.append(bytes(read(read(1)[0])))
        elif op == 0x42:                                 # BINBYTES 'B'
            stack.append(bytes(read(struct.unpack("<I", read(4))[0])))
        elif op == 0x8E:                                 # BINBYTES8
            stack.append(bytes(read(struct.unpack("<Q", read(8))[0])))
        else:
            raise UnsafePickleError(f"refusing pickle opcode {bytes([op])!r} at byte {pos - 1}")


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
