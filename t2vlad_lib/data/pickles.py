"""Loading released-format pickles without letting them run code.

A pickle names the functions that rebuild its objects, and loading calls them: ``pickle.load`` on a
crafted file can run ``os.system``. The released feature files only need numpy arrays (T_e, D_e), numpy
scalars and plain values (dict, list, str, int, float), so ``read_pickle`` resolves exactly those globals
and refuses every other one by name, before anything is called. The pickle format itself is kept: the
MSRVTT / ActivityNet / LSMDC releases ship pickles, some written by python 2 (read with ``latin1``).
"""

from __future__ import annotations

import importlib
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["read_pickle"]


class _RefusedGlobal(ValueError):
    """A pickle names a global that ``_ArraysOnlyUnpickler`` does not resolve."""


# globals the released pickles need: numpy array / scalar reconstruction (numpy 1.x ``numpy.core``, 2.x
# ``numpy._core``), py2/protocol-2 byte strings (``_codecs.encode``) and plain containers
_NUMPY_CORE = {"multiarray": ("_reconstruct", "scalar"), "numeric": ("_frombuffer",)}
_PLAIN = {(m, n) for m in ("builtins", "__builtin__") for n in ("set", "frozenset", "complex", "bytearray")}
_PLAIN |= {("_codecs", "encode"), ("collections", "OrderedDict")}


def _numpy_core(sub: str, name: str):
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{sub}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {sub}.{name}")


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` resolves numpy arrays, dtypes and scalars and a few plain builtins.

    Every other global (``os.system``, ``builtins.exec``, any class) raises before it can be called: a
    pickle can only call what ``find_class`` hands it.
    """

    def __init__(self, file, path: str, **kwargs) -> None:
        super().__init__(file, **kwargs)
        self.path = path

    def find_class(self, module: str, name: str):
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        package, _, sub = module.rpartition(".")
        if package in ("numpy.core", "numpy._core") and name in _NUMPY_CORE.get(sub, ()):
            return _numpy_core(sub, name)
        if (module, name) in _PLAIN:
            return super().find_class(module, name)  # maps py2 names (__builtin__) to py3 ones
        raise _RefusedGlobal(f"{self.path}: refused global {module}.{name}; expected only numpy arrays and "
                             "plain values (a pickle can run code when loaded: get it from a trusted source)")


@lru_cache(maxsize=16)
def _read_cached(path: str, mtime_ns: int, size: int):
    with open(path, "rb") as f:
        try:
            return _ArraysOnlyUnpickler(f, path).load()
        except UnicodeDecodeError:  # python-2 pickles of some releases
            f.seek(0)
            return _ArraysOnlyUnpickler(f, path, encoding="latin1").load()


def read_pickle(path: str | Path):
    """Load a released-format pickle (cached by path and modification time: do not mutate the result).

    Pickle files can execute code when loaded. This loader refuses every global but numpy arrays and plain
    values (dict, list, str, numbers), yet get the files from a trusted source.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a refused global (named), or a file that is not a complete pickle (e.g. truncated).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    st = path.stat()
    try:
        return _read_cached(str(path), st.st_mtime_ns, st.st_size)
    except _RefusedGlobal:
        raise
    except Exception as err:  # truncated, not a pickle, a directory, ...: the cause in one line
        raise ValueError(f"{path}: not a readable pickle ({type(err).__name__}: {err}); expected a complete "
                         "pickle file (download or generate it again)") from None
