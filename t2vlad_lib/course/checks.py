"""The exercises' checks: ``check_exercise("05.2", answer)`` prints ``Exercise 05.2: pass`` or what is wrong
in one sentence. A check recomputes the right value when it runs, with the library or a short reference
computation, from the exercise's numbers or from inputs the check cell passes
(``check_exercise("00.1", answer, sims=S)``); it never compares with a stored copy of the solution. The
exercise format of the notebooks is in ``docs/teaching.md``; ``t2vlad_lib.course.student`` (``make student``)
builds the student edition from it.

A new check is a function of the answer (and of the named inputs) that returns None when the answer is right
and one helpful sentence otherwise, registered with ``@exercise("NN.N", "what `answer` holds")``; it names the
mistake it recognises rather than the expected value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..model.alignment import global_similarity

__all__ = ["CHECKS", "Check", "check_exercise", "exercise", "problem"]


@dataclass(frozen=True)
class Check:
    """One exercise's check: ``test(answer, **inputs)`` -> None (right) or one sentence (what is wrong)."""

    exercise: str  # "NN.N": notebook number, exercise number
    expects: str  # what `answer` holds, for the student ("the 4 ranks as a list")
    test: Callable[..., str | None]


CHECKS: dict[str, Check] = {}


def exercise(exercise_id: str, expects: str) -> Callable:
    """Register a check for exercise ``"NN.N"`` (decorator)."""

    def register(test: Callable[..., str | None]) -> Callable[..., str | None]:
        if exercise_id in CHECKS:
            raise ValueError(f"two checks for exercise {exercise_id}")
        CHECKS[exercise_id] = Check(exercise_id, expects, test)
        return test

    return register


def problem(exercise_id: str, answer: Any, **inputs: Any) -> str | None:
    """What is wrong with ``answer`` to exercise ``exercise_id`` in one sentence, or None when it is right."""
    if exercise_id not in CHECKS:
        raise KeyError(f"no check for exercise {exercise_id!r}; the checks are {sorted(CHECKS)}")
    check = CHECKS[exercise_id]
    if answer is ... or answer is None:
        return (f"`answer` is still empty: replace `answer = ...` in the solution cell above with your code "
                f"({check.expects}) and run that cell, then this one.")
    try:
        return check.test(answer, **inputs)
    except (TypeError, ValueError) as err:
        return f"`answer` should be {check.expects} ({err})."


def check_exercise(exercise_id: str, answer: Any, **inputs: Any) -> None:
    """Print ``Exercise NN.N: pass`` or ``Exercise NN.N: not yet. <what is wrong>``."""
    message = problem(exercise_id, answer, **inputs)
    print(f"Exercise {exercise_id}: " + ("pass" if message is None else f"not yet. {message}"))


def _array(answer: Any) -> np.ndarray:
    array = np.asarray(answer.detach().cpu() if isinstance(answer, torch.Tensor) else answer)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"expected numbers, got {type(answer).__name__} of {array.dtype}")
    return array.astype(float)


def _vector(answer: Any, n: int, what: str) -> np.ndarray:
    values = _array(answer)
    if values.shape != (n,):
        raise ValueError(f"expected {n} {what}, got shape {values.shape}")
    return values


def _number(answer: Any) -> float:
    value = _array(answer)
    if value.size != 1:
        raise ValueError(f"expected one number, got shape {value.shape}")
    return float(value.reshape(()))


# notebook 00: the retrieval task

@exercise("00.1", "the t2v ranks with optimistic tie-breaking, one 0-based rank per caption")
def _optimistic_ranks(answer: Any, sims: Any) -> str | None:
    sims = np.asarray(sims, dtype=float)
    own = np.diag(sims)[:, None]  # caption i belongs to video i
    right = (sims > own).sum(1)  # optimistic: only strictly higher scores push the true video down
    got = _vector(answer, len(right), "ranks (one per caption)")
    if np.array_equal(got, right):
        return None
    pessimistic = (sims >= own).sum(1) - 1
    split = (right + pessimistic) / 2  # the notebook's rule (t2vlad_lib.core.metrics.t2v_ranks)
    if np.array_equal(got, right + 1):
        return "ranks here start at 0 (the true video first is rank 0); yours start at 1."
    if np.array_equal(got, split):
        return ("these are the notebook's split-tie ranks (a tie counts half); optimistic tie-breaking "
                "counts only the videos that score strictly higher than the true one.")
    if np.array_equal(got, pessimistic):
        return ("these are pessimistic ranks (every tie counted against the caption); optimistic "
                "tie-breaking counts only the videos that score strictly higher.")
    wrong = [i for i in range(len(right)) if got[i] != right[i]]
    return (f"caption(s) {wrong} have the wrong rank: count, in that caption's row, the videos whose score "
            "is strictly above the true video's.")


# notebook 01: VLAD to NetVLAD
# (checks of notebook 01 go here)


# notebook 02: the text encoder
# (checks of notebook 02 go here)


# notebook 03: the multi-expert video encoder
# (checks of notebook 03 go here)


# notebook 04: local alignment (T2VLAD)
# (checks of notebook 04 go here)


# notebook 05: global alignment

EX05_2 = {"weights": (0.5, 0.3, 0.2), "cosines": (0.2, 0.8, 0.4), "available": (True, True, False)}


@exercise("05.2", "s_global as one number")
def _renormalised_global(answer: Any) -> str | None:
    w, cos, avail = (torch.tensor(v, dtype=torch.float64) for v in EX05_2.values())
    # unit text features along x; video feature e at cosine cos_e from it: the library's eq. (4) on (1, E, 2)
    video = torch.stack([cos, (1 - cos**2).sqrt()], -1)[None]
    text = torch.tensor([1.0, 0.0], dtype=torch.float64).expand_as(video)
    right = global_similarity(text, w[None], video, avail.bool()[None]).item()
    got = _number(answer)
    if math.isclose(got, right, rel_tol=1e-3):
        return None
    present = avail.bool()
    if math.isclose(got, (w * cos * avail).sum().item(), rel_tol=1e-3):
        return ("that is the weighted sum before renormalising: divide by the sum of the weights of the "
                "experts that are present.")
    if math.isclose(got, (w * cos).sum().item(), rel_tol=1e-3):
        return "the third expert is missing: drop its term, then renormalise the weights of the other two."
    if math.isclose(got, cos[present].mean().item(), rel_tol=1e-3):
        return "that is the plain mean of the present cosines: weight each one with its expert weight w_e."
    lo, hi = cos[present].min().item(), cos[present].max().item()
    return (f"s_global is a weighted average of the present experts' cosines, so it lies between {lo:g} and "
            f"{hi:g}, nearer the cosine whose weight is larger.")


# notebook 06: training
# (checks of notebook 06 go here)


# notebook 07: ablations
# (checks of notebook 07 go here)


# notebook 08: visualizing the alignment
# (checks of notebook 08 go here)


# notebook 09: efficiency and scale
# (checks of notebook 09 go here)


# notebook 10: beyond T2VLAD
# (checks of notebook 10 go here)


# notebook 11: better rankings at inference
# (checks of notebook 11 go here)


# notebook 12: the text encoder: ETVA and fine-tuning
# (checks of notebook 12 go here)
