"""One of each: seed, device, environment switches (FAST), cache directory, eval mode, timing in turns. (The
figure style is the course's: ``course.style``.)"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

__all__ = ["env_flag", "is_fast", "seed_everything", "get_device", "cache_dir", "eval_mode",
           "times_in_turns", "time_in_turns"]

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def env_flag(name: str, default: bool = False) -> bool:
    """The environment variable ``name`` as a switch: 1/true/yes/on or 0/false/no/off (any case), ``default``
    when unset or empty. Anything else raises ValueError naming the variable: ``T2VLAD_FAST=2`` is a typo,
    not a silent "off"."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() in _TRUE + _FALSE:
        return raw.lower() in _TRUE
    raise ValueError(f"environment variable {name}={raw!r}: expected 1/0, true/false, yes/no or on/off")


def is_fast() -> bool:
    """True when ``T2VLAD_FAST=1`` (or true/yes/on, :func:`env_flag`): notebooks and demos do less."""
    return env_flag("T2VLAD_FAST")


def seed_everything(seed: int = 0, deterministic: bool = False) -> int:
    """Seed python, numpy and torch (CPU and every CUDA device).

    Args:
        seed: the seed.
        deterministic: also ask cuDNN and torch for deterministic kernels (slower on GPU).
    Returns:
        the seed, for logging.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    return seed


def get_device(prefer: str | None = None) -> torch.device:
    """The device to run on: ``prefer`` if given (e.g. ``"cpu"``), else CUDA when present, else CPU."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cache_dir() -> str:
    """Where generated data and token-state caches live: ``$T2VLAD_CACHE`` or ``~/.cache/t2vlad``."""
    path = os.environ.get("T2VLAD_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "t2vlad")
    os.makedirs(path, exist_ok=True)
    return path


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Eval mode (dropout off, BatchNorm statistics frozen) for the ``with`` block; afterwards, also after an
    error, each module gets back the train/eval mode it had."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


def times_in_turns(
    calls: dict[str, Callable[[], object]], rounds: int = 3, warmup: int = 0
) -> dict[str, list[float]]:
    """Seconds of every call of every round, the calls taking turns (A, B, A, B, ...) after ``warmup`` untimed
    rounds, so a change of machine load hits all of them alike (timing one after another does not)."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    return times


def time_in_turns(calls: dict[str, Callable[[], object]], rounds: int = 3) -> dict[str, float]:
    """Median seconds of each call, timed in turns (:func:`times_in_turns`)."""
    return {name: float(np.median(t)) for name, t in times_in_turns(calls, rounds).items()}
