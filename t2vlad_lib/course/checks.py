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

from ..core.stats import Verdict, seed_verdict, sign_test_p
from ..extensions.distill import similarity_distillation_loss
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

EX07_1 = {"seeds": 5, "agree": 4}  # 4 of 5 seeds agree with the claim, 1 disagrees


@exercise("07.1", "the one-sided sign-test p as one number")
def _sign_test(answer: Any) -> str | None:
    n, k = EX07_1["seeds"], EX07_1["agree"]
    right = sign_test_p([1.0] * k + [-1.0] * (n - k))
    got = _number(answer)
    if math.isclose(got, right, rel_tol=1e-3):
        return None
    if math.isclose(got, math.comb(n, k) / 2**n, rel_tol=1e-3):
        return (f"that is P(X = {k}) alone: the p-value counts every outcome at least as extreme, so add "
                f"the chance that all {n} seeds agree.")
    if math.isclose(got, min(1.0, 2 * right), rel_tol=1e-3):
        return "that is the two-sided p; the claim has a direction, so take the one-sided tail P(X >= 4)."
    if math.isclose(got, 1 / 2**n, rel_tol=1e-3):
        return f"1/2^{n} is the p when all {n} seeds agree; here one seed disagrees."
    return f"count the outcomes with at least {k} agreeing seeds among the 2^{n} equally likely ones."


EX07_2 = {"r1": 0.36, "se_points": 0.5}  # an R@1 of 36 %, a wanted standard error of 0.5 points


@exercise("07.2", "the number of test queries as one number")
def _queries_needed(answer: Any) -> str | None:
    p, se = EX07_2["r1"], EX07_2["se_points"] / 100
    right = p * (1 - p) / se**2  # SE = sqrt(p (1 - p) / Q)
    got = _number(answer)
    if abs(got - right) <= 0.01 * right or math.ceil(right) == got:
        return None
    if math.isclose(got, 1.96**2 * right, rel_tol=0.01):
        return ("that makes the 95 % half-width (1.96 standard errors) 0.5 points; the exercise asks for the "
                "standard error itself.")
    if math.isclose(got, p * (1 - p) / se, rel_tol=0.01):
        return "the standard error is a square root: solve SE^2 = p (1 - p) / Q for Q."
    if math.isclose(got, p * (1 - p) / EX07_2["se_points"] ** 2, rel_tol=0.01):
        return "write the standard error as a fraction (0.5 points = 0.005), like p = 0.36."
    return "solve SE = sqrt(p (1 - p) / Q) for Q, with p and SE both as fractions."


@exercise("07.3", "the Verdict of seed_verdict (K = best against the runner-up)")
def _k_verdict(answer: Any, r1: Any, n_queries: int) -> str | None:
    if not isinstance(answer, Verdict):
        raise TypeError(f"got {type(answer).__name__}")
    means = r1.mean().sort_values(ascending=False)
    best, runner = means.index[0], means.index[1]
    right = seed_verdict(r1[runner].to_numpy(), r1[best].to_numpy(), n_queries)
    if np.allclose(answer.deltas, right.deltas) and math.isclose(answer.low, right.low, abs_tol=1e-6):
        return None
    if np.allclose(answer.deltas, [-d for d in right.deltas]):
        return ("your deltas have the wrong sign: the claim is 'the best K beats the runner-up', so pass the "
                "runner-up's values first (A) and the best K's second (B).")
    if np.allclose(answer.deltas, right.deltas):
        return f"the deltas are right but the interval is not: pass n_queries={n_queries}."
    return (f"compare the best K by mean R@1 ({best}) with the second best ({runner}), seed by seed, "
            "with seed_verdict.")


# notebook 08: visualizing the alignment
# (checks of notebook 08 go here)


# notebook 09: efficiency and scale
# (checks of notebook 09 go here)


# notebook 10: beyond T2VLAD

EX10_1 = {"student": ((0.0, 0.0), (0.0, 0.0)), "teacher": ((math.log(4), 0.0), (math.log(2), 0.0)),
          "tau": 0.5}


@exercise("10.1", "the distillation loss as one number")
def _distill_tau(answer: Any) -> str | None:
    s, t = (torch.tensor(EX10_1[k], dtype=torch.float64) for k in ("student", "teacher"))
    right = similarity_distillation_loss(s, t, temperature=EX10_1["tau"]).item()
    got = _number(answer)
    if math.isclose(got, right, rel_tol=1e-3):
        return None
    if math.isclose(got, similarity_distillation_loss(s, t, temperature=1.0).item(), rel_tol=1e-3):
        return "that is the loss at tau = 1: divide both score matrices by tau = 0.5 before the softmaxes."
    p = torch.softmax(t / EX10_1["tau"], 1)
    row_kl = (p * (p.log() - torch.softmax(s / EX10_1["tau"], 1).log())).sum(1).mean().item()
    if math.isclose(got, row_kl, rel_tol=1e-3):
        return ("that is the row half (text -> videos) alone: average it with the column half "
                "(video -> texts).")
    return "softmax each row and each column of T / tau and of S / tau, take KL(teacher || student), average."


@exercise("10.2", "the number of matching-head passes per epoch as one number")
def _teacher_passes(answer: Any, num_train: int, batch_size: int) -> str | None:
    steps = num_train // batch_size  # the last incomplete batch is dropped
    right = steps * batch_size**2
    got = _number(answer)
    if got == right:
        return None
    if got == math.ceil(num_train / batch_size) * batch_size**2:
        return "the loader drops the last incomplete batch: count only full batches of B."
    if got == steps * batch_size:
        return "a cross-encoder teacher scores every (caption, video) pair of a batch: B^2 passes per step."
    if got == batch_size**2:
        return "that is one step; an epoch has one step per full batch of the training set."
    return "multiply the head passes per step (one per pair of the batch) by the steps per epoch."


# notebook 11: better rankings at inference
# (checks of notebook 11 go here)


# notebook 12: the text encoder: ETVA and fine-tuning
# (checks of notebook 12 go here)
