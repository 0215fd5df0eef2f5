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

from ..core.stats import sign_test_p
from ..engine.evaluate import retrieval_metrics
from ..extensions.normalisation import dual_softmax, querybank_normalise
from ..extensions.rerank import rerank
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

EX11_TAUS = (0.01, 0.02, 0.05, 0.1)
EX11_METHODS = ("dual softmax", "QB-Norm")


@exercise("11.1", 'a dict {"dual softmax": tau, "QB-Norm": tau} with each tau from (0.01, 0.02, 0.05, 0.1)')
def _tuned_temperatures(answer: Any, sims: Any, bank: Any, query_masks: Any) -> str | None:
    if not isinstance(answer, dict) or set(answer) != set(EX11_METHODS):
        raise TypeError(f"got {answer!r}")
    score = {"dual softmax": lambda t: dual_softmax(sims, t),
             "QB-Norm": lambda t: querybank_normalise(sims, bank, t)}
    for method in EX11_METHODS:
        if not any(math.isclose(float(answer[method]), t) for t in EX11_TAUS):
            return f"{method}: choose its tau from the grid {EX11_TAUS}."
        r1 = {t: retrieval_metrics(score[method](t), query_masks)["t2v_R1"] for t in EX11_TAUS}
        best = max(r1.values())
        if math.isclose(r1[min(EX11_TAUS, key=lambda t: abs(t - float(answer[method])))], best, abs_tol=1e-9):
            continue
        if math.isclose(float(answer[method]), min(r1, key=r1.get)):
            return f"{method}: that tau gives the lowest validation R@1; keep the one with the highest."
        return f"{method}: another tau of the grid gives a higher validation t2v R@1 than yours."
    return None


@exercise("11.2", "a dict {5: cap, 10: cap}: the largest re-ranked t2v R@1 possible at k = 5 and k = 10")
def _rerank_caps(answer: Any, results: Any) -> str | None:
    if not isinstance(answer, dict) or set(answer) != {5, 10}:
        raise TypeError(f"got {answer!r}")
    got = {k: _number(v) for k, v in answer.items()}
    if all(math.isclose(got[k], results[f"t2v_R{k}"], abs_tol=1e-6) for k in got):
        return None
    if all(math.isclose(got[k], results[f"v2t_R{k}"], abs_tol=1e-6) for k in got):
        return ("those are video-to-text recalls; the re-ranker re-orders videos for a caption "
                "(text-to-video).")
    if all(math.isclose(v, results["t2v_R1"], abs_tol=1e-6) for v in got.values()):
        return ("that is the dual R@1, which a re-ranker can raise: a perfect head brings the true video to "
                "rank 1 from anywhere in the top k.")
    return ("a perfect head puts the true video first whenever the dual encoder has it in its top k: the cap "
            "is a recall of the dual encoder.")


@exercise("11.3", "three booleans: can a k = 10 re-rank change a median rank of 12, R@50, video-to-text R@1")
def _what_rerank_moves(answer: Any) -> str | None:
    if not (isinstance(answer, (tuple, list)) and len(answer) == 3):
        raise TypeError(f"got {answer!r}")
    gen = torch.Generator().manual_seed(0)
    sims, truth = torch.rand(200, 200, generator=gen), torch.arange(200)
    _, order = rerank(sims, lambda q, v: torch.where(v == q, 5.0, 0.0), 10)  # a head that finds each true one
    before = (sims.argsort(1, descending=True) == truth[:, None]).float().argmax(1)
    after = (order == truth[:, None]).float().argmax(1)
    deep = before >= 10
    right = (bool((before[deep] != after[deep]).any()),  # a true video below rank 10 moved?
             bool(((before < 50) != (after < 50)).any()),  # R@50 changed?
             False)  # rerank returns one order per caption (t2v); the videos' caption rankings are untouched
    names = ("a median rank of 12 (a true video below the top 10 is never seen by the head)",
             "R@50 (the set of the top 10, and every rank below it, stays the same)",
             "video-to-text R@1 (only each caption's list of videos is re-ordered)")
    wrong = [name for name, a, r in zip(names, answer, right, strict=True) if bool(a) != r]
    return None if not wrong else f"look again at {wrong[0]}."


# notebook 12: the text encoder: ETVA and fine-tuning

EX12_1 = {"vocab": 30_000, "hidden": 1024, "heads": 16, "embedding": 128, "layers": 24}


def _albert_formula(v: int, h: int, e: int, shared: bool = True, factorised: bool = True, layers: int = 24
                    ) -> int:
    """Notebook 12's count, with a mistake switched on: every layer its own weights, or no factorisation."""
    layer = 4 * (h * h + h) + (h * 4 * h + 4 * h) + (4 * h * h + h) + 4 * h
    embed = (v + 514) * e + 2 * e + (e * h + h) if factorised else (v + 514) * h + 2 * h
    return embed + (1 if shared else layers) * layer + h * h + h


@exercise("12.1", "ALBERT-large's parameter count as one integer")
def _albert_large(answer: Any) -> str | None:
    from transformers import AlbertConfig, AlbertModel  # here: a slow import only this check needs

    ex = EX12_1
    with torch.device("meta"):
        model = AlbertModel(AlbertConfig(embedding_size=ex["embedding"], hidden_size=ex["hidden"],
                                         num_attention_heads=ex["heads"], num_hidden_layers=ex["layers"],
                                         intermediate_size=4 * ex["hidden"]))
    right = sum(p.numel() for p in model.parameters())
    got = _number(answer)
    if got == right:
        return None
    v, h, e = ex["vocab"], ex["hidden"], ex["embedding"]
    if got == _albert_formula(v, h, e, shared=False):
        return "the 24 layers share one set of weights: count the transformer layer once."
    if got == _albert_formula(v, h, e, factorised=False):
        return "ALBERT's embeddings are factorised: V x E_emb, then a projection E_emb -> H, not V x H."
    if got == _albert_formula(v, 768, e):
        return "that is ALBERT-base (H = 768); ALBERT-large is wider."
    if got == _albert_formula(v, h, e) - (h * h + h):
        return "the pooler (a dense H -> H layer on [CLS]) is part of the model: add it."
    return "count embeddings, the projection, one shared layer and the pooler with H = 1024, as in section 1."


@exercise("12.3", "a pair (seeds needed for p < 0.05 when every seed improves, p of 2 seeds up out of 3)")
def _sign_test_seeds(answer: Any) -> str | None:
    if not (isinstance(answer, (tuple, list)) and len(answer) == 2):
        raise TypeError(f"got {answer!r}")
    n, p = int(_number(answer[0])), _number(answer[1])
    right_n = next(k for k in range(1, 20) if sign_test_p([1] * k) < 0.05)
    right_p = sign_test_p([1, 1, -1])
    if n != right_n:
        if sign_test_p([1] * n) >= 0.05:
            return f"with {n} seeds, all up, p = {sign_test_p([1] * n):g}, not below 0.05."
        return f"{n} seeds reach p < 0.05, but fewer do too: find the smallest number."
    if math.isclose(p, right_p, abs_tol=1e-9):
        return None
    if math.isclose(p, 3 / 8, abs_tol=1e-9):
        return "that is P(X = 2); the sign test's p is the tail P(X >= 2), at least as many seeds up."
    if math.isclose(p, min(1.0, 2 * right_p), abs_tol=1e-9):
        return "that is a two-sided p; the test here is one-sided (does the change improve R@1?)."
    return ("p is P(X >= 2) for X ~ Bin(3, 1/2): the chance of at least 2 of 3 seeds up if the change did "
            "nothing.")
