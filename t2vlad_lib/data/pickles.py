"""Loading released-format pickles without letting them run code, or blow up memory, time or the C stack.

A pickle names the functions that rebuild its objects, and loading calls them: ``pickle.load`` on a
crafted file can run ``os.system``. The released feature files only need numpy arrays (T_e, D_e), numpy
scalars and plain values (dict, list, str, int, float), so ``read_pickle`` resolves exactly the globals
that numpy's own pickles and protocol-2 pickles of plain values name, each checked (``_GLOBALS``), and
refuses every other one by name, before anything is called. Three more guards keep a small file from
asking for much (each refused with a line naming it):

- an opcode scan before loading (``_scan``): every length inside the file, memo indices in sequence (a
  10-byte pickle can ask the C unpickler for a 1 GB memo), containers nested at most ``MAX_DEPTH`` deep
  (hashing a dict key of tuples nested 1e6 deep overflows the C stack: exit 139);
- the callables: no ``numpy.ndarray(shape)`` or ``bytearray(n)`` of a size the file does not hold,
  ``_codecs.encode`` with ``latin1`` only (punycode is quadratic: 300 KB ran for over a minute);
- arrays: numeric, bool or string dtypes exactly as numpy builds them, no larger than the file (a pickled
  dtype can forge fields or an object flag that numpy then trusts; a short object list segfaults).

The pickle format itself is kept: the MSRVTT / ActivityNet / LSMDC releases ship pickles, some written by
python 2 (read with ``latin1``). This module imports only the standard library and numpy.
"""

from __future__ import annotations

import _codecs
import importlib
import math
import mmap
import pickle
import pickletools
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["MAX_DEPTH", "read_pickle"]

MAX_DEPTH = 100  # containers in containers, counted as the scan builds them (a feature table is ~5 deep)


class _Refused(ValueError):
    """A pickle asks for something ``read_pickle`` does not do (the message says what)."""


# --- the opcode scan -------------------------------------------------------------------------------------

_ATOM = [0, True]  # [depth, sealed] of every value that holds no other one (str, bytes, numbers, globals)
# what an opcode does to the stack; argument: n fixed bytes, or a 1/4/8-byte length, or text lines
(_BAD, _ATOM_FIXED, _ATOM_LEN1, _ATOM_LEN4, _ATOM_LEN8, _ATOM_LINES, _SKIP, _PUT, _MEMOIZE, _GET, _MARK,
 _EMPTY, _FROM_MARK, _INTO_MARK, _FROM_TOP, _INTO_TOP, _POP, _POP_MARK, _DUP, _STOP) = range(20)
_KINDS = {
    _ATOM_LEN1: "SHORT_BINUNICODE SHORT_BINBYTES SHORT_BINSTRING LONG1",
    _ATOM_LEN4: "BINUNICODE BINBYTES BINSTRING LONG4",  # BINSTRING/LONG4 lengths are signed: < 0 is > file
    _ATOM_LEN8: "BINUNICODE8 BINBYTES8 BYTEARRAY8",
    _ATOM_FIXED: "BININT BININT1 BININT2 BINFLOAT NONE NEWTRUE NEWFALSE NEXT_BUFFER EXT1 EXT2 EXT4",
    _ATOM_LINES: "INT LONG STRING UNICODE FLOAT PERSID GLOBAL",
    _SKIP: "PROTO FRAME READONLY_BUFFER", _PUT: "PUT BINPUT LONG_BINPUT", _MEMOIZE: "MEMOIZE",
    _GET: "GET BINGET LONG_BINGET", _MARK: "MARK", _EMPTY: "EMPTY_LIST EMPTY_TUPLE EMPTY_DICT EMPTY_SET",
    _FROM_MARK: "TUPLE LIST DICT FROZENSET INST OBJ",  # a new object of the items above the mark
    _INTO_MARK: "APPENDS SETITEMS ADDITEMS",  # the items above the mark go into the object below it
    _FROM_TOP: "TUPLE1 TUPLE2 TUPLE3 REDUCE NEWOBJ NEWOBJ_EX STACK_GLOBAL BINPERSID",  # of the top n items
    _INTO_TOP: "APPEND SETITEM BUILD",  # the top n items go into the object below them
    _POP: "POP", _POP_MARK: "POP_MARK", _DUP: "DUP", _STOP: "STOP",
}
_ITEMS = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3, "REDUCE": 2, "NEWOBJ": 2, "NEWOBJ_EX": 3, "STACK_GLOBAL": 2,
          "BINPERSID": 1, "APPEND": 1, "SETITEM": 2, "BUILD": 1}
_TABLE = [(_BAD, 0, "?")] * 256  # opcode byte -> (kind, n, name)
for _op in pickletools.opcodes:
    _kind = next(k for k, names in _KINDS.items() if _op.name in names.split())
    _n = (_ITEMS[_op.name] if _op.name in _ITEMS else 2 if _op.name in ("GLOBAL", "INST")  # n items or lines
          else 1 if _kind == _ATOM_LINES else _op.arg.n if _op.arg else 0)  # lines, or bytes (-1: a line)
    _TABLE[ord(_op.code)] = (_kind, _n, _op.name)


def _nest(items: list, at: int, into: list | None = None) -> list:
    """The [depth, sealed] cell of a new object of ``items``, or of ``into`` once they went in. The items
    are sealed: deepening one later (a list that holds itself) would leave the counts above it too small."""
    depth = 1 + max((c[0] for c in items), default=0)
    for c in items:
        c[1] = True
    if into is not None and depth <= into[0]:
        return into
    if depth > MAX_DEPTH:
        raise _Refused(f"refused containers nested more than {MAX_DEPTH} deep (byte {at})")
    if into is None:
        return [depth, False]
    if into[1]:
        raise _Refused(f"refused an object filled after it went into another one (byte {at}), e.g. a list "
                       "that holds itself")
    into[0] = depth
    return into


def _memo_put(memo: list, index: int, cell: list, at: int) -> None:
    """Store ``cell`` at memo ``index``: the next one, or one already stored (overwritten); a memo index
    out of sequence is refused (it would make the C unpickler allocate a memo that large)."""
    if index == len(memo):
        memo.append(cell)
    elif index < len(memo):
        memo[index] = cell
    else:
        raise _Refused(f"refused memo index {index} (byte {at}): {len(memo)} stored so far")


def _scan(data, size: int) -> None:
    """Walk the opcodes of a pickle without building anything: a stack of [depth, sealed] cells.

    Raises ``pickle.UnpicklingError`` where the C unpickler would fail (truncated, invalid or malformed)
    and ``_Refused`` for a memo index out of sequence or containers nested deeper than ``MAX_DEPTH``.
    """
    stack, marks, memo, pos = [], [], [], 0
    push, table, find, from_bytes = stack.append, _TABLE, data.find, int.from_bytes
    try:  # data[pos] past the end raises IndexError: the argument before ran over the end of the file
        while True:
            at = pos
            kind, n, name = table[data[pos]]
            pos += 1
            if kind == _ATOM_LEN1:  # the most frequent opcodes first: words, memo, lists
                pos += 1 + data[pos]
                push(_ATOM)
            elif kind == _GET and n > 0:
                push(memo[data[pos] if n == 1 else from_bytes(data[pos:pos + n], "little")])
                pos += n
            elif kind == _MEMOIZE or kind == _PUT and n > 0:
                index = len(memo) if kind == _MEMOIZE else data[pos] if n == 1 else from_bytes(
                    data[pos:pos + n], "little")
                pos += n
                _memo_put(memo, index, stack[-1], at)
            elif kind == _ATOM_LEN4 or kind == _ATOM_LEN8:
                width = 4 if kind == _ATOM_LEN4 else 8
                pos += width + from_bytes(data[pos:pos + width], "little")
                push(_ATOM)
            elif kind == _ATOM_FIXED or kind == _SKIP:
                pos += n
                if kind == _ATOM_FIXED:
                    push(_ATOM)
            elif kind == _MARK:
                marks.append(len(stack))
            elif kind == _INTO_MARK or kind == _FROM_MARK:
                for _ in range(n if kind == _FROM_MARK else 0):  # INST: module and class name lines
                    pos = find(b"\n", pos) + 1 or size
                start = marks.pop()
                items = stack[start:]
                del stack[start:]
                push(_nest(items, at)) if kind == _FROM_MARK else _nest(items, at, stack[-1])
            elif kind == _EMPTY:
                push([1, False])
            elif kind == _FROM_TOP or kind == _INTO_TOP:
                if len(stack) < n + (kind == _INTO_TOP):
                    raise IndexError
                items = stack[-n:]
                del stack[-n:]
                push(_nest(items, at)) if kind == _FROM_TOP else _nest(items, at, stack[-1])
            elif kind == _ATOM_LINES:
                for _ in range(n):
                    pos = find(b"\n", pos) + 1 or size
                push(_ATOM)
            elif kind == _PUT or kind == _GET:  # protocol 0: the memo index as a decimal line
                end = find(b"\n", pos)
                index, pos = int(data[pos:end] if end >= 0 else b"x"), end + 1
                push(memo[index]) if kind == _GET else _memo_put(memo, index, stack[-1], at)
            elif kind == _POP and marks and marks[-1] == len(stack):
                marks.pop()
            elif kind == _POP:
                stack.pop()
            elif kind == _POP_MARK:
                del stack[marks.pop():]
            elif kind == _DUP:
                push(stack[-1])
            elif kind == _STOP:
                return
            else:
                raise pickle.UnpicklingError(f"invalid load key, {chr(data[at])!r}.")
    except _Refused:
        raise
    except (IndexError, ValueError):  # past the end of the data, or of the stack / memo
        if pos < size:
            raise pickle.UnpicklingError(f"malformed pickle at byte {at} ({name})") from None
    raise pickle.UnpicklingError("pickle data was truncated")


# --- the globals numpy's pickles name, checked ------------------------------------------------------------


def _numpy_core(sub: str, name: str):
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{sub}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {sub}.{name}")


def _plain(dtype) -> bool:
    """A numeric, bool or string dtype exactly as numpy builds it from its name: a pickled dtype's state
    can forge fields, offsets or an object flag, and numpy then trusts them when it fills an array."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufcSU":
        return False
    ref = np.dtype(dtype.str)
    return (dtype.fields, dtype.subdtype, dtype.itemsize, dtype.flags) == (None, None, ref.itemsize,
                                                                           ref.flags)


def _check_dtype(dtype, where: str) -> None:
    if not _plain(dtype):
        raise _Refused(f"refused {where} of dtype {getattr(dtype, 'str', type(dtype).__name__)} (numpy "
                       "trusts the layout a pickle gives an object or structured dtype)")


def _ndarray(*_):
    raise _Refused("refused a call of numpy.ndarray (it allocates any shape; numpy's own pickles only name "
                   "it as the type _reconstruct builds)")


class _CheckedArray(np.ndarray):
    """What ``_reconstruct`` returns while loading: BUILD (``__setstate__``) fills it only with a plain
    dtype (numpy itself checks that the data holds shape x itemsize bytes). ``_unwrapped`` turns it back
    into a plain ndarray once the pickle is loaded."""

    def __setstate__(self, state) -> None:
        if not (isinstance(state, tuple) and len(state) in (4, 5)):
            raise _Refused(f"refused an array state of type {type(state).__name__} (numpy writes a tuple)")
        _check_dtype(state[-3], "an array")
        super().__setstate__(state)


def _dtype(name, align=False, copy=True) -> np.dtype:
    """``numpy.dtype`` as its pickles call it: by name, and always a copy (``copy=False`` would hand BUILD
    numpy's shared float32 dtype to rewrite)."""
    if not (isinstance(name, str) and name.isalnum() and len(name) <= 8):
        raise _Refused(f"refused numpy.dtype of {str(name)[:20]!r} (numpy's pickles name it, e.g. 'f4')")
    return np.dtype(name, bool(align), True)


def _scalar(dtype, *data):
    _check_dtype(dtype, "a numpy scalar")
    return _numpy_core("multiarray", "scalar")(dtype, *data)


def _frombuffer(buf, dtype, shape, order):
    _check_dtype(dtype, "an array")
    return _numpy_core("numeric", "_frombuffer")(buf, dtype, shape, order)


def _latin1(text, encoding="utf-8", errors="strict") -> bytes:
    """``_codecs.encode`` as pickle protocol 2 writes bytes: ``latin1`` only (other codecs, e.g. punycode,
    are not linear in time)."""
    if encoding != "latin1" or not isinstance(text, str):
        raise _Refused(f"refused _codecs.encode with codec {str(encoding)[:20]!r} (pickle protocol 2 "
                       "writes bytes with latin1)")
    return _codecs.encode(text, "latin1", errors)


def _of_bytes(kind: type):
    """``bytes`` / ``bytearray`` of nothing or of bytes (``bytearray(2e9)`` is 2 GB from a 39-byte file)."""
    def build(*args):
        if args and (len(args) > 1 or not isinstance(args[0], bytes)):
            raise _Refused(f"refused {kind.__name__} of {', '.join(type(a).__name__ for a in args)} (of "
                           "an integer it allocates that many bytes)")
        return kind(*args)
    return build


_GLOBALS = {("numpy", "ndarray"): _ndarray, ("numpy", "dtype"): _dtype, ("_codecs", "encode"): _latin1,
            ("collections", "OrderedDict"): OrderedDict}
for _core in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x pickles
    _GLOBALS.update({(f"{_core}.multiarray", "scalar"): _scalar,
                     (f"{_core}.numeric", "_frombuffer"): _frombuffer,
                     (f"{_core}.multiarray", "_reconstruct"): "_reconstruct"})  # a method: it knows the size
for _builtins in ("builtins", "__builtin__"):  # python 3 and 2
    _GLOBALS.update({(_builtins, "set"): set, (_builtins, "frozenset"): frozenset,
                     (_builtins, "complex"): complex, (_builtins, "bytes"): _of_bytes(bytes),
                     (_builtins, "bytearray"): _of_bytes(bytearray)})


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` hands out only the checked callables of ``_GLOBALS``.

    Every other global (``os.system``, ``builtins.exec``, any class) raises before it can be called: a
    pickle can only call what ``find_class`` hands it.
    """

    def __init__(self, file, size: int, **kwargs) -> None:
        super().__init__(file, **kwargs)
        self.size, self.arrays = size, 0

    def find_class(self, module: str, name: str):
        found = _GLOBALS.get((module, name))
        if found is None:
            raise _Refused(f"refused global {module}.{name}")
        return getattr(self, found) if isinstance(found, str) else found

    def _reconstruct(self, subtype, shape, typecode) -> _CheckedArray:
        """numpy's ``_reconstruct``: the empty int8 array that BUILD then fills; no larger than the file."""
        if subtype is not _ndarray or typecode not in (b"b", "b"):
            raise _Refused(f"refused _reconstruct of {getattr(subtype, '__name__', type(subtype).__name__)} "
                           f"with typecode {str(typecode)[:10]} (numpy's pickles rebuild numpy.ndarray, 'b')")
        if math.prod(shape) > self.size:
            raise _Refused(f"refused an array of shape {tuple(shape)[:4]} (more bytes than the file's "
                           f"{self.size})")
        self.arrays += 1
        return _numpy_core("multiarray", "_reconstruct")(_CheckedArray, shape, typecode)


def _unwrapped(obj, done: dict):
    """``obj`` with each ``_CheckedArray`` in its dicts, lists and tuples a plain ndarray (the scan
    bounds the recursion by MAX_DEPTH and refuses cycles)."""
    if type(obj) is _CheckedArray:
        return obj.view(np.ndarray)
    if not isinstance(obj, (dict, list, tuple)):
        return obj
    if id(obj) in done:
        return done[id(obj)][1]
    done[id(obj)] = (obj, obj)
    if isinstance(obj, tuple):
        new = tuple(_unwrapped(v, done) for v in obj)
        done[id(obj)] = (obj, new if any(a is not b for a, b in zip(new, obj, strict=True)) else obj)
    else:
        for key, value in list(obj.items() if isinstance(obj, dict) else enumerate(obj)):
            new = _unwrapped(value, done)
            if new is not value:
                obj[key] = new
    return done[id(obj)][1]


@lru_cache(maxsize=16)
def _read_cached(path: str, mtime_ns: int, size: int):
    with open(path, "rb") as f:
        if size == 0:
            raise EOFError("Ran out of input")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            _scan(data, len(data))
        for encoding in ("ASCII", "latin1"):  # latin1: python-2 pickles of some releases
            f.seek(0)
            unpickler = _ArraysOnlyUnpickler(f, size, encoding=encoding)
            try:
                obj = unpickler.load()
            except UnicodeDecodeError:
                if encoding == "latin1":
                    raise
                continue
            return _unwrapped(obj, {}) if unpickler.arrays else obj


def read_pickle(path: str | Path):
    """Load a released-format pickle (cached by path and modification time: do not mutate the result).

    Pickle files can execute code when loaded. This loader refuses every global but numpy arrays and plain
    values (dict, list, str, numbers), containers nested deeper than ``MAX_DEPTH`` and arrays larger than
    the file, yet get the files from a trusted source.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a refused global or request (named), or a file that is not a complete pickle (e.g.
            truncated, a directory).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    st = path.stat()
    try:
        return _read_cached(str(path), st.st_mtime_ns, st.st_size)
    except _Refused as err:
        raise ValueError(f"{path}: {err}; expected numpy's own pickles of numeric arrays and plain values "
                         "(a pickle can run code when loaded: get it from a trusted source)") from None
    except Exception as err:  # truncated, not a pickle, a directory, ...: the cause in one line
        raise ValueError(f"{path}: not a readable pickle ({type(err).__name__}: {str(err)[:200]}); expected "
                         "a complete pickle file (download or generate it again)") from None
