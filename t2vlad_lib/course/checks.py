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

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.captions import parse_bag
from ..engine.runs import read_results
from ..model.alignment import global_similarity
from ..model.losses import hardest_negative_ranking_loss, max_margin_ranking_loss

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

@exercise("05.1", "the mean audio weight of the test captions that name a sound minus that of the other test "
                  "captions, one number")
def _sound_audio_weight(answer: Any, weights: Any, experts: Any, captions: Any) -> str | None:
    w = _array(weights)  # (N_t, E) expert weights w_e of the test captions
    sound = np.array([any(kind == "sound" for kind, _ in parse_bag(c.split())) for c in captions])
    if w.shape != (len(captions), len(experts)) or sound.all() or not sound.any():
        raise ValueError("the check needs the (N_t, E) weights, the experts and the N_t captions, with and "
                         "without a sound")
    diff = {e: w[sound, i].mean() - w[~sound, i].mean() for i, e in enumerate(experts)}
    right = diff["audio"]
    got = _number(answer)

    def close(x: float) -> bool:
        return math.isclose(got, x, abs_tol=5e-4)  # rounded to 3-4 decimals

    if close(right):
        return None
    if close(-right):
        return "the sign is reversed: the sound captions' mean audio weight minus the other captions' mean."
    if close(100 * right):
        return "weights are shares (they sum to 1 over the experts), not percentages: do not multiply by 100."
    if close(w[sound, experts.index("audio")].mean() - w[:, experts.index("audio")].mean()):
        return "you compared the sound captions with all captions; compare them with the other captions."
    other = [e for e in experts if e != "audio" and close(diff[e])]
    if other:
        return (f"that is the difference of the {other[0]} expert's weight: take the column of "
                f"`experts.index('audio')`.")
    return ("mark each test caption that names a sound (parse_bag finds a ('sound', ...) attribute), then "
            "subtract the other captions' mean audio weight from the sound captions' mean.")


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


EX05_3 = {"n_t": 4917, "n_v": 4917, "chunk": 100}


@exercise("05.3", "the encoder passes of the dual encoder, the chunked pairs (chunks of 100) and the "
                  "cross-encoder for 4917 x 4917, as a dict or tuple of three numbers in that order")
def _encoder_passes(answer: Any) -> str | None:
    n_t, n_v, c = EX05_3.values()
    got = _vector(list(answer.values()) if isinstance(answer, Mapping) else answer, 3, "numbers")
    dual, chunked, cross = got
    problems = []
    if dual != n_t + n_v:
        problems.append("the dual encoder encodes each caption once and each video once"
                        + (" (not once per pair)" if dual == n_t * n_v else ""))
    if chunked != n_t * math.ceil(n_v / c) + n_v * math.ceil(n_t / c):
        if math.isclose(chunked, 2 * n_t * n_v / c, rel_tol=1e-6):
            problems.append("a partial chunk of videos is still a chunk: round N / 100 up (ceil)")
        elif chunked in (n_t * math.ceil(n_v / c), n_v * math.ceil(n_t / c)):
            problems.append("the chunked scheme re-encodes the captions once per chunk of videos AND the "
                            "videos once per chunk of captions: add both")
        elif chunked == n_t * math.ceil(n_v / 50) + n_v * math.ceil(n_t / 50):
            problems.append("the public code's chunks hold 100 items (section 5), not 50")
        else:
            problems.append("the chunked count is each caption encoded once per chunk of 100 videos plus "
                            "each video once per chunk of 100 captions")
    if cross != n_t * n_v:
        problems.append("a cross-encoder runs one joint pass per (caption, video) pair"
                        + (", not one per direction" if cross == 2 * n_t * n_v else ""))
    return None if not problems else "; ".join(problems) + "."


# notebook 06: training

@exercise("06.1", "the paper's max-margin loss of S at m = 0.02, one number")
def _paper_loss_by_hand(answer: Any, sims: Any) -> str | None:
    sims = torch.as_tensor(_array(sims), dtype=torch.float64)
    b, m = len(sims), 0.02
    got = _number(answer)

    def close(x: Any) -> bool:
        return math.isclose(got, float(x), rel_tol=1e-3)

    if close(max_margin_ranking_loss(sims, m)):
        return None
    pos = sims.diagonal()
    t2v, v2t = (m - pos[:, None] + sims).relu(), (m - pos[None, :] + sims).relu()  # all B^2 hinge terms each
    off = ~torch.eye(b, dtype=torch.bool)
    hinges = torch.cat([t2v[off], v2t[off]])
    if close(hinges.sum()):
        return "that is the sum of the hinges: the paper's loss is their mean over the 2 B (B-1) negatives."
    if close((t2v.sum() + v2t.sum()) / (2 * b * b)):
        return ("you averaged over all 2 B^2 terms, the diagonal's constant m included: average over the "
                "2 B (B-1) negatives only.")
    if close(t2v[off].mean()) or close(v2t[off].mean()):
        return "the loss is bidirectional: average the text-to-video AND the video-to-text hinges."
    if close(t2v[off].mean() + v2t[off].mean()):
        return ("you added the two directions' means: the loss is their average (divide by 2 B (B-1) = "
                f"{2 * b * (b - 1)}).")
    if close(hinges[hinges > m + 1e-9].sum() / len(hinges)):
        return "a negative that ties with its positive still costs the margin: [m - s_ii + s_ij]_+ = m > 0."
    if close(max_margin_ranking_loss(sims, 0.2)):
        return "that is the loss at the port's margin 0.2: use the paper's m = 0.02."
    if close(hardest_negative_ranking_loss(sims, m)):
        return ("that is the hardest-negative loss (the worst negative per row and column): the paper's loss "
                "averages the hinge over every negative.")
    return ("write the 12 hinges [m - s_ii + s_ij]_+ (rows, text to video) and [m - s_jj + s_ij]_+ (columns, "
            "video to text) over the off-diagonal entries and average them.")


def _run_loss(run_dir: Path) -> tuple[str, float]:
    cfg = json.loads((run_dir / "config.json").read_text())
    return cfg["loss"]["name"], float(cfg["loss"]["margin"])


@exercise("06.2", "{'hardest': (val t2v R@1, test t2v R@1), 'max_margin': (val t2v R@1, test t2v R@1)} "
                  "of the two `fast` runs, in percent")
def _two_losses(answer: Any, runs: Any) -> str | None:
    if not isinstance(answer, Mapping) or set(answer) != {"hardest", "max_margin"}:
        raise TypeError("a dict with the keys 'hardest' and 'max_margin'")
    dirs = {name: Path(runs[name]) for name in ("hardest", "max_margin")}
    results = {name: read_results(d) for name, d in dirs.items()}
    for name, d in dirs.items():
        if results[name] is None or not (d / "config.json").exists():
            return f"there is no finished run in {d.name}/: train the {name} run into it (train_or_load)."
    if dirs["hardest"].resolve() == dirs["max_margin"].resolve():
        return "both runs are one directory: give the max-margin run its own out_dir."
    loss = {name: _run_loss(d) for name, d in dirs.items()}
    if loss["max_margin"][0] != "max_margin":
        return (f"the run in {dirs['max_margin'].name}/ trained with the {loss['max_margin'][0]!r} loss: set "
                "loss.name=max_margin (a run directory that already holds a run is reloaded, not retrained).")
    if not math.isclose(loss["max_margin"][1], 0.02):
        return (f"the max-margin run used margin {loss['max_margin'][1]:g}: set loss.margin=0.02, the "
                "paper's margin.")
    if loss["hardest"][0] != "hardest":
        return (f"the run in {dirs['hardest'].name}/ should be the `fast` profile's default "
                "hardest-negative run.")
    got = {name: _vector(answer[name], 2, "numbers (val, test)") for name in dirs}

    def pick(split_a: str, split_b: str, metric: str = "t2v_R1", scale: float = 1.0) -> bool:
        return all(np.allclose(got[n], [results[n][s][metric] * scale for s in (split_a, split_b)],
                               atol=0.05 * scale) for n in dirs)

    if pick("val", "test"):
        return None
    if pick("test", "val"):
        return "validation first, then test: (val t2v R@1, test t2v R@1)."
    if pick("val", "test", "v2t_R1"):
        return "those are video-to-text numbers: the exercise compares text-to-video R@1 (t2v_R1)."
    if pick("val", "test", scale=0.01):
        return "R@1 is in percent in results.json (11.3, not 0.113): report it as stored."
    if all(np.allclose(got[a], [results[b]["val"]["t2v_R1"], results[b]["test"]["t2v_R1"]], atol=0.05)
           for a, b in (("hardest", "max_margin"), ("max_margin", "hardest"))):
        return "the two runs are swapped: 'hardest' is the fast-seed run, 'max_margin' the paper's loss."
    return ("read each run's results.json (train_or_load returns it): the val and test t2v_R1 of its best "
            "epoch.")


@exercise("06.3", "the epoch that validation v2t R@1 would select, numbered as in history.json")
def _v2t_epoch(answer: Any, history: Any) -> str | None:
    v2t = history["val_v2t_R1"]  # a DataFrame indexed by epoch (1-based)
    got = _number(answer)
    right = int(v2t.idxmax())
    if got == right:
        return None
    if got == float(v2t.max()):
        return "that is the best v2t R@1 itself: `answer` is the epoch where it is reached."
    if got == int(np.argmax(v2t.to_numpy())):
        return "that is a 0-based position: epochs are numbered from 1 (the index of history.json)."
    if got == int(v2t.idxmin()):
        return "that is the epoch of the lowest v2t R@1: select the highest."
    if got == int(history["val_t2v_R1"].idxmax()):
        return "that is the epoch selected on val t2v R@1: use the video-to-text column, val_v2t_R1."
    return "take the epoch (history's index) at which the val_v2t_R1 column is highest."



# notebook 07: ablations
# (checks of notebook 07 go here)


# notebook 08: visualizing the alignment

@exercise("08.1", "the mean ghost share of the text tokens and of the video tokens, text first")
def _ghost_mass(answer: Any, t_assign: Any, tmask: Any, v_assign: Any, vmask: Any) -> str | None:
    got = _vector(answer, 2, "numbers (text, video)")
    sides = [(torch.as_tensor(a).double(), torch.as_tensor(m).bool()) for a, m in ((t_assign, tmask),
                                                                                   (v_assign, vmask))]
    ghost = [1 - a.sum(-1) for a, _ in sides]  # (N, L) and (N, M): what the K real centers did not take
    right = np.array([float(g[m].mean()) for g, (_, m) in zip(ghost, sides, strict=True)])

    def close(x: Any) -> bool:
        return np.allclose(got, x, atol=6e-4)  # rounded to 3 decimals

    if close(right):
        return None
    if close(right[::-1]):
        return "the order is (text, video): you swapped them."
    if close(1 - right):
        return "that is the mass on the K real centers: the ghost takes one minus their sum."
    if close([float(g.mean()) for g in ghost]):
        return "you averaged over padded positions too: keep only the real tokens (tmask, vmask)."
    if close([float(((g * m).sum(1) / m.sum(1).clamp_min(1)).mean()) for g, (_, m) in zip(ghost, sides,
                                                                                           strict=True)]):
        return "you averaged per caption/video first: the share of the mass is the mean over all real tokens."
    k = sides[0][0].shape[-1]
    if close([1 / (k + 1)] * 2) or close([1 / k] * 2):
        return "that is the uniform share, not the model's: measure 1 - sum_k a_ik on the real tokens."
    return "a token's ghost share is 1 minus the sum of its K assignments; average it over the real tokens."


def _colour_centers(lift: Any, axis: int = 1) -> list[int]:
    best = lift.idxmax(axis=axis)
    return sorted(int(k) for k in best.index[best == "colour"])


@exercise("08.2", "{0: [...], 1: [...]}: per seed, the centers whose strongest kind (by lift) is colour")
def _colour_per_seed(answer: Any, seed0: Any, seed1: Any) -> str | None:
    tables = {0: seed0, 1: seed1}  # kind_lift(...) of each seed: (lift, share, base)
    if not isinstance(answer, Mapping) or set(answer) != {0, 1}:
        raise TypeError("a dict {0: centers of seed 0, 1: centers of seed 1}")
    got = {s: sorted(int(k) for k in np.atleast_1d(np.asarray(v))) for s, v in answer.items()}
    right = {s: _colour_centers(t[0]) for s, t in tables.items()}
    if got == right:
        return None
    if got == {0: right[1], 1: right[0]}:
        return "the seeds are swapped: seed 0 is the notebook's model, seed 1 the one you loaded."
    if got == {s: [int(t[0]["colour"].idxmax())] for s, t in tables.items()}:
        return ("that is the one center with the highest colour lift per seed; the question asks for every "
                "center whose strongest kind is colour (argmax over the kinds, per center).")
    if got == {s: _colour_centers(t[1]) for s, t in tables.items()}:
        return ("you ranked the kinds by raw share: colour words are common, so compare lifts (share / "
                "overall share).")
    if got == {s: [k + 1 for k in v] for s, v in right.items()}:
        return "centers are numbered from 0, as in the lift table's index."
    return ("per seed, take lift.idxmax(axis=1) (each center's strongest kind) and keep the centers where it "
            "is colour.")


@exercise("08.3", "the mean number of distinct argmax centers per test video of its appearance tokens and "
                  "of its motion tokens, appearance first")
def _motion_spread(answer: Any, v_assign: Any, owner: Any, experts: Any) -> str | None:
    got = _vector(answer, 2, "numbers (appearance, motion)")
    v_assign, owner, experts = torch.as_tensor(v_assign), torch.as_tensor(owner), list(experts)

    def spread(tokens: Any, axis: int = -1) -> float:  # mean over videos of the distinct argmax values
        best = v_assign[:, tokens].argmax(axis)
        return float(np.mean([len(set(r.tolist())) for r in best]))

    app, mot = (owner == experts.index(e) for e in ("appearance", "motion"))

    def close(x: Any) -> bool:
        return np.allclose(got, x, atol=6e-3)  # rounded to 2 decimals

    right = [spread(app), spread(mot)]
    if close(right):
        return None
    if close(right[::-1]):
        return "the order is (appearance, motion): you swapped them."
    if close([spread(app, 1), spread(mot, 1)]):
        return "take the argmax over the centers (the last axis), one center per token, not over the tokens."
    if math.isclose(got[1], spread(torch.ones_like(mot)), abs_tol=6e-3):
        return ("count the motion tokens only (owner == the motion expert's index), not all the video's "
                "tokens.")
    return ("for each test video, take the argmax center of each motion token and count the distinct ones; "
            "average over the videos.")



# notebook 09: efficiency and scale

@exercise("09.1", "the smallest number of MMT layers whose analytic FLOP ratio to T2VLAD reaches 2.75x (an "
                  "integer)")
def _mmt_depth(answer: Any, gflop: Callable[..., float], experts: Any) -> str | None:
    # gflop: benchmarks.efficiency.encoder_gflop (outside the library), experts: PAPER_EXPERTS
    def ratio(layers: int, dim: int = 768) -> float:
        return gflop(experts, dim, layers=layers, mmt=True) / gflop(experts, dim, layers=1, mmt=False)

    got = _number(answer)
    right = next(n for n in range(1, 100) if ratio(n) >= 2.75)
    if got == right:
        return None
    if not got.is_integer():
        return "`answer` is the number of layers (an integer), not a FLOP ratio."
    if got == right - 1:
        return (f"at {right - 1} layers the ratio is {ratio(right - 1):.2f}x, just below 2.75x (and use "
                "PAPER_EXPERTS at D = 768): the first depth whose ratio reaches it.")
    if got > right:
        shallower = int(got) - 1
        return (f"a shallower MMT already reaches 2.75x: at {shallower} layers the ratio is "
                f"{ratio(shallower):.2f}x.")
    return (f"at {int(got)} layer(s) the ratio is only {ratio(int(got)):.2f}x: compare the MMT encoder of n "
            "layers with T2VLAD's 1 layer, at the paper's dims (PAPER_EXPERTS, D = 768).")


EX09_2 = {"sizes": (200, 400), "chunk": 50}


@exercise("09.2", "the predicted speed-ups of encode-once over chunks of 50, for N = 200 and N = 400")
def _chunk50(answer: Any) -> str | None:
    sizes, c = EX09_2.values()
    got = _vector(answer, len(sizes), "speed-ups (one per N)")
    right = np.array([math.ceil(n / c) for n in sizes], dtype=float)
    if np.array_equal(got, right):
        return None
    if np.array_equal(got, [math.ceil(n / 100) for n in sizes]):
        return "those are the speed-ups of chunks of 100: here the chunks hold 50."
    if np.array_equal(got, [2 * n * math.ceil(n / c) for n in sizes]):
        return "that is the chunked scheme's encoding count: divide by the dual encoder's 2 N."
    if not np.allclose(got, got.round()):
        return ("predict from the encoding counts (a ratio of whole numbers) before you look at the "
                "measurement.")
    return "the chunked way encodes 2 N ceil(N / c) items against 2 N for encode-once: take their ratio."


EX09_3 = {"gallery": 1_000_000, "without_speech": 0.3}


@exercise("09.3", "the number of vectors in faiss and of videos scored exactly per query, in that order")
def _missing_expert_gallery(answer: Any) -> str | None:
    n, share = EX09_3.values()
    got = _vector(answer, 2, "numbers (in faiss, scored exactly)")
    missing = round(n * share)
    right = [n - missing, missing]
    if np.array_equal(got, right):
        return None
    if np.array_equal(got, right[::-1]):
        return "swapped: the complete videos go into faiss, the ones without speech are scored exactly."
    if np.allclose(got, [1 - share, share]) or np.allclose(got, [100 * (1 - share), 100 * share]):
        return "count videos, not shares of the gallery."
    if got[0] == n:
        return ("a video without speech has no fixed key (its score depends on the text's weights): it stays "
                "out of faiss.")
    if got[1] == 0:
        return "the videos without speech are not lost: GalleryIndex scores them exactly for every query."
    return "only the videos with every expert are one inner product; the others are scored exactly."



# notebook 10: beyond T2VLAD
# (checks of notebook 10 go here)


# notebook 11: better rankings at inference
# (checks of notebook 11 go here)


# notebook 12: the text encoder: ETVA and fine-tuning
# (checks of notebook 12 go here)
