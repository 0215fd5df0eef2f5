"""Checkpoints: written atomically, checked on load.

A checkpoint is one ``torch.save`` dict: model, optimiser, scheduler and RNG states, the config, the
epoch/step counters and the best validation score. It is written to a temporary file in the same
directory and renamed over the old one (``os.replace`` is atomic), so a crash mid-write leaves the
previous good checkpoint in place.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import config_diff

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
    "CheckpointError",
    "check_config",
    "run_lock",
]

# Keys that may differ between a checkpoint and the resuming run without changing the model/training.
RUNTIME_KEYS = ("device", "num_workers", "eval_batch_size", "out_dir", "epochs", "amp")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, truncated, or made for another config."""


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (temp file in the same directory, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint; a missing, truncated or foreign file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated zip, pickle error, ...
        raise CheckpointError(
            f"checkpoint {path} is unreadable or truncated ({type(exc).__name__}: {exc}); "
            "the previous checkpoint, if any, is untouched"
        ) from exc
    missing = {"model", "config"} - set(payload) if isinstance(payload, dict) else {"model", "config"}
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {sorted(missing)}: not a t2vlad checkpoint")
    return payload


def check_config(path: str | Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse a checkpoint whose config differs from the current one (runtime-only keys excepted)."""
    diff = [k for k in config_diff(saved, current) if k.split(".")[0] not in RUNTIME_KEYS]
    if diff:
        details = ", ".join(
            f"{k}: {_get(saved, k)!r} in checkpoint vs {_get(current, k)!r} now" for k in diff
        )
        raise CheckpointError(f"checkpoint {path} was made with another config; mismatching keys: {details}")


def _get(d: dict, dotted: str) -> Any:
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return "<absent>"
        d = d[k]
    return d


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold ``run_dir/.lock`` (the owner's pid) while training into ``run_dir``: a second process that
    would write the same checkpoints gets a RuntimeError naming the owner. The lock of a process that is
    gone (a killed run, before ``--resume``) is taken over."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            text = lock.read_text().strip() if lock.exists() else ""
            if not text.isdigit() or _alive(int(text)):  # no pid yet: its owner is writing it
                raise RuntimeError(
                    f"{run_dir}: another process (pid {text or '?'}) is training into this run directory; "
                    f"wait for it to finish, or delete {lock} if no such process runs"
                ) from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
