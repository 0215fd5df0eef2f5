"""One of each: seed, device, FAST switch, cache directory, timing in turns. (The figure style is the
course's: ``course.style``.)"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["FAST", "is_fast", "seed_everything", "get_device", "cache_dir",
           "times_in_turns", "time_in_turns"]


def is_fast() -> bool:
    """True when ``T2VLAD_FAST=1`` (or ``true``/``yes``): notebooks and demos shrink their work."""
    return os.environ.get("T2VLAD_FAST", "0").strip().lower() in {"1", "true", "yes", "on"}


FAST: bool = is_fast()


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
