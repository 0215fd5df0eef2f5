"""Checkpoints: plain data, written atomically, verified on load; and the lock of a run directory.

A checkpoint is one ``torch.save`` dict of tensors and plain Python values only (model, optimiser,
scheduler and RNG states, the config as a dict, counters, the history), so it loads with
``torch.load(weights_only=True)``: a crafted file cannot run code. ``torch.load`` does not notice a
corrupted byte inside a tensor, so every checkpoint carries ``sha256``, a digest of its tensors' bytes and
of everything else in it, checked on load. It is written to a temporary file in the same directory and
renamed over the old one (``os.replace`` is atomic): a crash mid-write leaves the previous checkpoint.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import random
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "payload_digest",
    "rng_state",
    "set_rng_state",
    "CheckpointError",
    "RunLockError",
    "run_lock",
    "atomic_write_text",
]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, truncated, corrupted, or made for another config."""


class RunLockError(RuntimeError):
    """Another live process trains into the run directory."""


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as plain values and tensors (``weights_only``-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(obj: Any) -> Any:
    """A JSON-able image of a payload: tensors become their dtype, shape and the sha256 of their bytes."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        return {"tensor": hashlib.sha256(data).hexdigest(), "dtype": str(t.dtype), "shape": list(t.shape)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return "nan"
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    kind = type(obj).__name__
    raise TypeError(f"a checkpoint holds tensors and plain values only, not {kind} ({obj!r:.60})")


def payload_digest(payload: dict[str, Any]) -> str:
    """sha256 of a checkpoint payload (without its own ``sha256`` entry)."""
    body = {k: v for k, v in payload.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(_plain(body), sort_keys=True).encode()).hexdigest()


def _atomic(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
        except (RuntimeError, OSError) as err:  # torch.save reports a failed write as "unexpected pos"
            cause = err if isinstance(err, OSError) else _os_error(err)
            if cause is None or cause.filename:
                raise
            raise OSError(cause.errno, cause.strerror, str(path)) from None  # e.g. ENOSPC: the disk is full
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _os_error(err: BaseException) -> OSError | None:
    """The OSError (e.g. ENOSPC, disk full) behind an exception, if one is in its chain."""
    seen = err.__context__
    while seen is not None and not isinstance(seen, OSError):
        seen = seen.__context__
    return seen


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors and plain values) with its digest to ``path`` atomically."""
    payload = {**payload, "sha256": payload_digest(payload)}
    return _atomic(Path(path), lambda fh: torch.save(payload, fh))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically (a temporary file in the same directory, then rename)."""
    return _atomic(Path(path), lambda fh: fh.write(text.encode()))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and verify its digest.

    Raises :class:`CheckpointError` naming the file when it is missing, truncated, holds anything but
    tensors and plain values (a pickle that would run code is refused before it runs), is not a t2vlad
    checkpoint, or does not match its digest (corrupted).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:  # unreadable (permissions): the caller reports it as such
        raise
    except Exception as exc:  # a global that is not a tensor or plain value (code), a truncated zip ...
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in str(exc):
            raise CheckpointError(  # not torch's advice (to load it without weights_only): that runs code
                f"checkpoint {path} cannot be loaded safely: it holds a Python object "
                f"{'(' + found.group(1) + ') ' if found else ''}other than tensors and plain values, and "
                "unpickling it could run code, so t2vlad never loads it; train the run again, or get the "
                "file from where it was made"
            ) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded safely ({type(exc).__name__}: {first[:300]}); it is "
            "truncated or not a t2vlad checkpoint"
        ) from None
    missing = {"model", "config"} - set(payload) if isinstance(payload, dict) else {"model", "config"}
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {sorted(missing)}: not a t2vlad checkpoint")
    if "sha256" not in payload:
        raise CheckpointError(f"checkpoint {path} has no digest: written by an older t2vlad; train it again")
    if payload_digest(payload) != payload["sha256"]:
        raise CheckpointError(f"checkpoint {path} is corrupted: its content does not match its sha256 digest")
    return payload


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``run_dir/.lock`` while training into ``run_dir``.

    The lock is the kernel's (``fcntl.flock``): it belongs to the open file, so it is released the moment
    its process ends, killed or not, and no stale lock can be taken over twice. After locking, the file
    must still be the one at the path (else another process removed it meanwhile: lock again), and the
    owner's pid is written into it for the message a second process gets (:class:`RunLockError`).
    """
    import fcntl

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    while True:
        try:  # never through a symbolic link: the pid would be written wherever it points
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as err:
            if err.errno != errno.ELOOP:
                raise
            raise RunLockError(f"{lock} is a symbolic link; a run lock must be a plain file: delete it "
                               f"({os.readlink(lock)!r} is left alone)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunLockError(
                f"{run_dir}: another process (pid {owner}) is training into this run directory; wait for it "
                "to finish or stop it (the lock is released when that process ends)"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the path was unlinked by the previous owner after we opened it: lock the new file
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)  # while still holding the lock: a waiter re-checks the inode
        os.close(fd)
