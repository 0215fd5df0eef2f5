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

import copy
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core.metrics import t2v_ranks, v2t_ranks
from ..core.stats import Verdict, seed_verdict, sign_test_p
from ..data import RELEASED_DIMS
from ..data.captions import parse_bag
from ..engine.evaluate import retrieval_metrics
from ..engine.runs import read_results
from ..extensions.distill import similarity_distillation_loss
from ..extensions.normalisation import dual_softmax, querybank_normalise
from ..extensions.rerank import rerank
from ..model.alignment import global_similarity
from ..model.losses import hardest_negative_ranking_loss, max_margin_ranking_loss
from ..model.video import VideoEncoder
from ..model.vlad import NetVLAD, vlad
from .figures import ARROWS, BOXES

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
    split = t2v_ranks(sims, np.ones((len(sims), 1), bool))  # the notebook's rule: a tie counts half
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


def _two_captions(sims: np.ndarray, interleaved: bool = True) -> np.ndarray:
    """Exercise 00.2's (2N, N) matrix: caption 2j is row j of ``sims``, caption 2j+1 half of it."""
    if not interleaved:  # the usual slip: the second captions as a block under the first ones
        return np.vstack([sims, 0.5 * sims])
    out = np.empty((2 * len(sims), sims.shape[1]))
    out[0::2], out[1::2] = sims, 0.5 * sims
    return out


@exercise("00.2", "a pair (number of t2v queries, the v2t ranks of the 4 videos)")
def _masked_captions(answer: Any, sims: Any) -> str | None:
    sims = np.asarray(sims, dtype=float)
    mask = np.ones((len(sims), 2), bool)
    mask[-1, 1] = False  # the second caption of the last video is missing
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise ValueError("expected a pair (count, ranks)")
    n_queries, ranks = _number(answer[0]), _vector(answer[1], len(sims), "v2t ranks (one per video)")
    s2 = _two_captions(sims)
    right_n, right_ranks = len(t2v_ranks(s2, mask)), v2t_ranks(s2, mask)
    if n_queries == 2 * len(sims):
        return "a caption marked missing in query_masks is not a query: count only the captions that exist."
    if n_queries != right_n:
        return f"there are {2 * len(sims)} captions and one is missing: count the t2v queries that remain."
    if np.allclose(ranks, right_ranks):
        return None
    if np.allclose(ranks, v2t_ranks(_two_captions(sims, False), mask)):
        return ("the captions of video j are rows 2j and 2j+1 (interleaved: S2[0::2] = S, "
                "S2[1::2] = 0.5 * S), not S stacked above 0.5 * S.")
    return "the count is right but the v2t ranks are not: use v2t_ranks on the (8, 4) matrix with the mask."


@exercise("00.3", "a dict {number of actors: number of videos}")
def _actor_counts(answer: Any, specs: Any) -> str | None:

    right = Counter(len(spec["actors"]) for spec in specs.values())
    got = {int(k): int(v) for k, v in dict(answer).items()}
    if got == dict(right):
        return None
    total = sum(got.values())
    if total != len(specs):
        return (f"your counts cover {total} videos: the shipped sample has {len(specs)} videos in its three "
                "splits, and `specs` (attributes.json) holds them all.")
    return ("count len(spec['actors']) per video: every actor of every shot, including one that leaves or "
            "enters during the clip.")


def _sides_combined() -> set[str]:
    """The course map's boxes whose result depends on both the caption and the video, from its arrows: an
    arrow labelled t / F_e^text (v / F_e^video) carries the text (video) side, an unlabelled one all that
    its source has seen; a box that passes each side on separately (the shared VLAD) combines nothing."""

    seen = {"caption": {"text"}, "experts": {"video"}}

    def carried(arrow) -> set[str]:
        label = arrow.label.replace("$", "")
        if label.startswith(("t", "F_e^{text}")):
            return {"text"}
        if label.startswith(("v", "F_e^{video}")):
            return {"video"}
        return seen.get(arrow.src, set())

    for _ in BOXES:  # relax until stable (the map is a small DAG)
        for box in BOXES:
            incoming = [a for a in ARROWS if a.dst == box]
            if incoming:
                seen[box] = set().union(*(carried(a) for a in incoming))
    separate = {b for b in BOXES if (out := [a for a in ARROWS if a.src == b]) and all(a.label for a in out)}
    return {b for b in BOXES if seen.get(b) == {"text", "video"} and b not in separate}


@exercise("00.4", "a list of the course map's box titles (as printed in the figure)")
def _both_sides(answer: Any) -> str | None:

    if isinstance(answer, str) or not all(isinstance(name, str) for name in answer):
        raise TypeError("expected a list of strings")

    def box_of(name: str) -> str | None:
        name = name.strip().lower()
        hits = [key for key, box in BOXES.items() if name and (box.title.lower().startswith(name)
                                                                or name == key.lower())]
        return hits[0] if len(hits) == 1 else None

    keys = [box_of(name) for name in answer]
    unknown = [name for name, key in zip(answer, keys, strict=True) if key is None]
    if unknown:
        return (f"{unknown} name no single box: use the titles printed in the figure (e.g. 'local "
                "similarity').")
    got, right = set(keys), _sides_combined()
    if got == right:
        return None
    if "vlad" in got:
        return ("the shared VLAD uses one set of centers for both sides, but it aggregates each side's "
                "tokens alone (eqs. 2 and 3): t never reads a video token, nor v a word.")
    if "text_global" in got:
        return "the global text head reads only t: F_e^text and w_e come from the caption alone."
    if got - right:
        return f"{sorted(BOXES[k].title for k in got - right)} see one side only: follow the arrows up."
    return (f"{len(right - got)} box(es) are missing: every box below the first one that mixes t and v also "
            "depends on both.")


# notebook 01: VLAD to NetVLAD

def _netvlad_from_centers(mu: torch.Tensor, alpha: float, ghosts: torch.Tensor | None = None):
    """The notebook's NetVLAD with assignment softmax_k(-alpha ||z - mu_k||^2) (eq. c) and c'_k = mu_k."""

    every = mu if ghosts is None else torch.cat([mu, ghosts])
    net = NetVLAD(mu.shape[1], len(mu), ghost_clusters=len(every) - len(mu), assignment="bias")
    net = net.to(mu.dtype).eval()
    with torch.no_grad():
        net.assign_weight.copy_(2 * alpha * every.T)
        net.assign_bias.copy_(-alpha * every.pow(2).sum(1))
        net.centers.copy_(mu)
    return net


EX01_GRID = np.logspace(-2, 2, 41)


@exercise("01.1", "the smallest alpha of the grid, one number")
def _alpha_threshold(answer: Any, centers: Any, points: Any) -> str | None:

    mu, z = torch.as_tensor(centers).double(), torch.as_tensor(points).double()
    hard = vlad(z[None], mu)[0]

    def cosines(squared: bool = True) -> list[float]:
        out = []
        for a in EX01_GRID:
            if squared:
                soft = _netvlad_from_centers(mu, float(a))(z[None])[0]
            else:  # the slip: -alpha ||z - mu_k|| instead of its square
                a_ik = torch.softmax(-a * torch.cdist(z, mu), -1)
                g = torch.nn.functional.normalize(a_ik.T @ z - a_ik.sum(0)[:, None] * mu, dim=-1)
                soft = torch.nn.functional.normalize(g.flatten(), dim=0)
            out.append(float(soft @ hard))
        return out

    with torch.no_grad():
        cos = cosines()
    i = next(j for j, c in enumerate(cos) if c > 0.99)
    got = _number(answer)
    if math.isclose(got, EX01_GRID[i], rel_tol=5e-3):
        return None
    if 0.99 < got <= 1.0 and any(math.isclose(got, c, abs_tol=5e-4) for c in cos):
        return "that is a cosine; `answer` is the alpha at which the cosine first exceeds 0.99."
    if got in (i, i + 1):
        return "that is the position in the grid; `answer` is the grid value alpha itself."
    if math.isclose(got, math.log10(EX01_GRID[i]), abs_tol=1e-3):
        return "that is log10(alpha); `answer` is alpha itself."
    if i > 0 and math.isclose(got, EX01_GRID[i - 1], rel_tol=5e-3):
        return "at that alpha the cosine is still below 0.99: take the first grid value above 0.99."
    with torch.no_grad():
        plain = cosines(squared=False)
    j = next((j for j, c in enumerate(plain) if c > 0.99), None)
    if j is not None and math.isclose(got, EX01_GRID[j], rel_tol=5e-3):
        return "eq. (c) uses the squared distance ||z_i - mu_k||^2, not the distance."
    if got > EX01_GRID[i]:
        return "the cosine already exceeds 0.99 at a smaller alpha: scan the grid from its smallest value."
    return "the cosine is still below 0.99 there: compare NetVLAD(alpha) with vlad(z, mu) at each grid value."


def _same_rows(a: torch.Tensor, b: torch.Tensor) -> list[bool]:
    return [bool(torch.allclose(x, y, atol=1e-5)) for x, y in zip(a, b, strict=True)]


@exercise("01.2", "the NetVLAD descriptors (B, K*D) of the permuted sets")
def _permuted_netvlad(answer: Any, net: Any, tokens: Any, mask: Any) -> str | None:
    with torch.no_grad():
        right = net(tokens, mask)
    got = torch.as_tensor(_array(answer), dtype=right.dtype)
    if got.shape != right.shape:
        raise ValueError(f"expected the shape {tuple(right.shape)} of net(tokens, mask), got "
                         f"{tuple(got.shape)}")
    same = _same_rows(got, right)
    if all(same):
        return None
    padded = [b for b in range(len(same)) if not bool(mask[b].all())]
    if not any(same):
        return "every set changed: permute the token axis N (dim 1) of tokens and mask, not another axis."
    if set(b for b, s in enumerate(same) if not s) <= set(padded):
        return ("only the set(s) with padded tokens changed: permute `mask` with the same permutation as "
                "`tokens` and pass it to net, so that padding stays padding.")
    return "some descriptors changed: apply one permutation to the N axis of both tokens and mask."


@exercise("01.3", "the norms of the K = 3 blocks of the descriptor, 3 numbers")
def _all_on_ghost(answer: Any, centers: Any, ghost: Any) -> str | None:
    mu, ghost = torch.as_tensor(centers).double(), torch.as_tensor(ghost).double()
    gen = torch.Generator().manual_seed(0)
    on_ghost = ghost + 0.01 * torch.randn(5, mu.shape[1], generator=gen, dtype=torch.float64)
    with torch.no_grad():
        right = _netvlad_from_centers(mu, 1.0, ghost)(on_ghost[None]).view(len(mu), -1).norm(dim=1).numpy()
    got = _vector(answer, len(mu), "block norms (one per real center)")
    if np.allclose(got, right, atol=1e-3):
        return None
    if np.allclose(got, 0, atol=1e-3):
        return ("not zero: the tiny weight that leaks to the nearest real center is rescaled to a unit "
                "block by the intra-normalisation.")
    if np.allclose(got, 1 / math.sqrt(len(mu)), atol=1e-3):
        return ("only the real center nearest the ghost gets a weight above F.normalize's epsilon; the far "
                "centers' blocks stay zero.")
    if np.isclose(np.sort(got)[-1], 1, atol=1e-3):
        return ("one block has norm 1, but not the right one: it is the block of the real center nearest "
                "the ghost.")
    return "compute net(tokens).view(K, D).norm(dim=1) on tokens within 0.01 of the ghost center (alpha = 1)."


# notebook 02: the text encoder

EX02_1 = "A Purple 8 zig-zags past the Hubble deep field"


@exercise("02.1", "the number of wordpieces, one integer")
def _wordpieces(answer: Any, tokenizer: Any) -> str | None:
    right = len(tokenizer.tokenize(EX02_1))
    got = _number(answer)
    if got == right:
        return None
    if got == right + 2:
        return "that counts [CLS] and [SEP] too: count the caption's own wordpieces (tok.tokenize)."
    if got == len(EX02_1.split()):
        return "that is the number of words: rare words are cut into several wordpieces (tok.tokenize)."
    if got == len(tokenizer.tokenize(EX02_1.replace("-", " "))) or got == right - 1:
        return "the hyphen is a wordpiece of its own: count it."
    return "count the items of tok.tokenize(caption), on the caption exactly as given."


def _vlads(netvlad: Any, encoder: Any, caption: str, length: int) -> tuple[torch.Tensor, ...]:
    """(masked, raw states unmasked as in the port, zeroed states unmasked) VLADs of one caption at L."""
    batch = encoder.tokenize([caption], length)
    with torch.inference_mode():
        states, mask = encoder(batch.input_ids, batch.attention_mask)
        raw = encoder.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        return netvlad(states, mask), netvlad(raw), netvlad(states), states, mask


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


@exercise("02.2", "the cosine between the unmasked VLAD vectors at L = 16 and L = 32, one number")
def _unmasked_padding(answer: Any, netvlad: Any, encoder: Any, caption: str) -> str | None:
    m16, raw16, zero16, *_ = _vlads(netvlad, encoder, caption, 16)
    m32, raw32, zero32, *_ = _vlads(netvlad, encoder, caption, 32)
    got = _number(answer)
    if math.isclose(got, _cos(raw16, raw32), abs_tol=1e-3):
        return None
    if math.isclose(got, 1.0, abs_tol=1e-4):
        return ("1 is the masked vector, which does not move with L; compare the unmasked ones, netvlad(raw) "
                "of enc.model(...).last_hidden_state at L = 16 and L = 32.")
    if math.isclose(got, _cos(zero16, zero32), abs_tol=1e-3):
        return ("those are the zeroed [PAD] states of TextEncoder fed unmasked; the port feeds the raw "
                "states enc.model(...).last_hidden_state.")
    if any(math.isclose(got, _cos(a, b), abs_tol=1e-3) for a in (raw16, raw32) for b in (m16, m32)):
        return ("that compares an unmasked vector with the masked one: compare unmasked L = 16 with "
                "unmasked L = 32.")
    return "compute both unmasked vectors with the same netvlad (nv) and take their cosine."


@exercise("02.3", "the cosine between the VLAD vectors with and without [CLS]/[SEP], one number")
def _words_only(answer: Any, netvlad: Any, encoder: Any, caption: str) -> str | None:
    *_, states, mask = _vlads(netvlad, encoder, caption, 16)
    last = int(mask.sum()) - 1  # [SEP]: the last real position

    def without(*positions: int) -> float:
        kept = mask.clone()
        kept[0, list(positions)] = False
        with torch.inference_mode():
            return _cos(netvlad(states, mask), netvlad(states, kept))

    got = _number(answer)
    if math.isclose(got, without(0, last), abs_tol=1e-3):
        return None
    if math.isclose(got, without(0), abs_tol=1e-3):
        return "that drops [CLS] only: drop [SEP] too (the last real position)."
    if math.isclose(got, without(last), abs_tol=1e-3):
        return "that drops [SEP] only: drop [CLS] (position 0) too."
    if math.isclose(got, 1.0, abs_tol=1e-5):
        return ("nothing changed: [SEP] is the last *real* position (mask.sum() - 1), not the last position "
                "of the padded row, and [CLS] is position 0.")
    return "keep the mask of section 5 but set it False at [CLS] (position 0) and [SEP] (mask.sum() - 1)."


EX02_4 = {"strings": 27_000, "epochs": 20, "captions_per_epoch": 3_000}


@exercise("02.4", "the ratio (fine-tuned encoder time of 20 epochs) / (one frozen pass), one number")
def _finetune_ratio(answer: Any, timing: Any) -> str | None:
    frozen, full = "frozen (inference_mode)", "fine-tune all (fwd+bwd)"
    once = EX02_4["strings"] * timing.loc[frozen, "total (s)"]
    steps = EX02_4["epochs"] * EX02_4["captions_per_epoch"]
    right = steps * timing.loc[full, "total (s)"] / once
    got = _number(answer)
    if math.isclose(got, right, rel_tol=0.02):
        return None
    if math.isclose(got, 1 / right, rel_tol=0.02):
        return "that is the inverse: fine-tuned time divided by the one frozen pass."
    if math.isclose(got, right / EX02_4["epochs"], rel_tol=0.02):
        return "that is one epoch of fine-tuning: the question asks for 20 epochs."
    if math.isclose(got, timing.loc[full, "x frozen"], rel_tol=0.02):
        return ("that is the cost of one step; scale it by the number of captions each side encodes "
                "(20 x 3,000 fine-tuned against 27,000 once).")
    if math.isclose(got, steps * timing.loc[full, "forward (s)"] / once, rel_tol=0.02):
        return "fine-tuning pays a forward and a backward pass: use the total (s) column."
    top2 = timing.loc["finetune_top_layers=2 (fwd+bwd)", "total (s)"]
    if math.isclose(got, steps * top2 / once, rel_tol=0.02):
        return "that is the top-2 row: the question is about fine-tuning all layers."
    return "divide 20 x 3,000 captions at the fine-tune-all cost per caption by 27,000 at the frozen cost."


# notebook 03: the multi-expert video encoder

@exercise("03.1", "the mean attention mass a real query gives to the empty audio tokens, one number")
def _unmasked_attention(answer: Any, encoder: Any, tokens: Any, mask: Any, video: int) -> str | None:
    layer = encoder.attention.layers[0]
    real = mask[video]
    with torch.no_grad():
        normed = layer.norm1(tokens[video:video + 1])
        _, att = layer.self_attn(normed, normed, normed, need_weights=True)  # no mask: the port
        _, att_masked = layer.self_attn(normed, normed, normed, key_padding_mask=~mask[video:video + 1],
                                        need_weights=True)
    on_empty = att[0][:, ~real].sum(-1)  # (M,) per query
    right = float(on_empty[real].mean())
    got = _number(answer)
    if math.isclose(got, right, abs_tol=1e-3):
        return None
    if math.isclose(got, float(att_masked[0][:, ~real].sum(-1)[real].mean()), abs_tol=1e-4):
        return "that is with the key-padding mask; the port's layer gets none: call self_attn without it."
    if math.isclose(got, float(on_empty.mean()), abs_tol=1e-3):
        return "average over the real queries only (the masked audio queries are discarded)."
    if math.isclose(got, right / int((~real).sum()), abs_tol=1e-3):
        return "that is the mean weight of one audio key: sum the weights over the 12 audio keys."
    if math.isclose(got, right * int(real.sum()), rel_tol=1e-3):
        return "that is a sum over the real queries: take their mean."
    return "for each real query, sum its weights on the empty audio keys, then average over the real queries."


@exercise("03.2", "the output tokens (B, M, D) of the batch with the appearance tokens permuted")
def _permuted_experts(answer: Any, encoder: Any, video: Any, perm: Any) -> str | None:
    with torch.no_grad():
        out = encoder(video)
    base = out.tokens
    app = out.expert_of_token == list(encoder.expert_dims).index("appearance")
    right = base.clone()
    right[:, app] = base[:, app][:, perm]
    got = torch.as_tensor(_array(answer), dtype=right.dtype)
    if got.shape != right.shape:
        raise ValueError(f"expected the shape {tuple(right.shape)} of encoder(video).tokens, got "
                         f"{tuple(got.shape)}")
    if torch.allclose(got, right, atol=1e-5):
        return None
    if torch.allclose(got, base, atol=1e-5):
        return ("that is the output of the unchanged batch: permute features['appearance'] along its segment "
                "axis (dim 1) with perm, then run the encoder.")
    if torch.allclose(got[:, ~app], base[:, ~app], atol=1e-5):
        return "the other tokens are right, the appearance block is not: permute with `perm`, along dim 1."
    return ("build the batch with replace(vb, features={**vb.features, 'appearance': ...[:, perm]}) and "
            "encode it.")


EX03_3 = {"dim": 768}


@exercise("03.3", "a dict {'proj': ..., 'attention': ..., 'geu': ...} of parameter counts")
def _encoder_parameters(answer: Any) -> str | None:

    def count(dims: dict, dim: int) -> dict[str, int]:
        enc = VideoEncoder(dims, dim)
        return {part: sum(p.numel() for p in getattr(enc, part).parameters())
                for part in ("proj", "attention", "geu")}

    right = count(RELEASED_DIMS, EX03_3["dim"])
    got = {str(k): int(v) for k, v in dict(answer).items()}
    if set(got) != set(right):
        raise ValueError(f"expected the keys {sorted(right)}, got {sorted(got)}")
    if got == right:
        return None
    if got == count(RELEASED_DIMS, 64):
        return "that is at D = 64; the question asks for the paper's D = 768."
    if got["attention"] == right["attention"]:
        return ("the attention is right but not the per-expert parts: use the eight released experts' "
                "widths, t2vlad_lib.data.RELEASED_DIMS.")
    return "build VideoEncoder(RELEASED_DIMS, 768) and sum p.numel() over each part's parameters."


# notebook 04: local alignment (T2VLAD)

EX04_1 = {"log_scale": math.log(9), "words": ((1.0, 0.0), (0.0, 1.0)), "video": ((1.0, 0.0),)}


def _toy_local(log_scale: float, intra: bool = True, mean: bool = True) -> float:
    """s_local of notebook 04's 2-D example: c_k = log_scale e_k, no bias, no ghost, c'_k = 0."""
    def blocks(z: torch.Tensor) -> torch.Tensor:
        a = torch.softmax(log_scale * z, -1)
        g = a.T @ z  # (K, D): sum_i a_ik (z_i - 0)
        return torch.nn.functional.normalize(g, dim=-1) if intra else g

    gt = blocks(torch.tensor(EX04_1["words"], dtype=torch.float64))
    gv = blocks(torch.tensor(EX04_1["video"], dtype=torch.float64))
    t = torch.nn.functional.normalize(gt.flatten(), dim=0)
    v = torch.nn.functional.normalize(gv.flatten(), dim=0)
    return float(t @ v) * (1 if mean else len(gt))


@exercise("04.1", "s_local as one number")
def _toy_s_local(answer: Any) -> str | None:
    got = _number(answer)
    if math.isclose(got, _toy_local(EX04_1["log_scale"]), abs_tol=1e-3):
        return None
    if math.isclose(got, _toy_local(math.log(3)), abs_tol=1e-3):
        return "that is s_local with ln 3, the example of section 1: set the assignment weights to ln 9."
    if math.isclose(got, _toy_local(EX04_1["log_scale"], mean=False), abs_tol=1e-3):
        return "that is the sum of the K per-center cosines: s_local is their mean."
    if math.isclose(got, _toy_local(EX04_1["log_scale"], intra=False), abs_tol=1e-3):
        return "normalise each block g_k (intra-normalisation) before the final L2."
    return "the assignments are (9/10, 1/10) and (1/10, 9/10): redo the two blocks of each side."


@exercise("04.2", "the video vector (1, K*D) of the shuffled tokens of video 1")
def _shuffled_video(answer: Any, vlad: Any, tokens: Any, mask: Any) -> str | None:
    with torch.no_grad():
        right = vlad.encode_video(tokens[1:2], mask[1:2])
    got = torch.as_tensor(_array(answer), dtype=right.dtype).reshape(-1, right.shape[-1])
    if got.shape != right.shape:
        raise ValueError(f"expected one video vector of shape {tuple(right.shape)}, got {tuple(got.shape)}")
    if torch.allclose(got, right, atol=1e-5):
        return None
    with torch.no_grad():
        if torch.allclose(got, vlad.encode_video(tokens[:1], mask[:1]), atol=1e-5):
            return "that is video 0: shuffle z_video[1] (8 real tokens, 3 padded) and m_video[1]."
    return ("the vector changed: permute the mask with the same permutation as the tokens, so that the 3 "
            "padded tokens stay padded.")


@exercise("04.3", "the gradient of text_vlad.assign_weight, a (D, K+G) tensor")
def _video_gradient(answer: Any, model: Any, tokens: Any, mask: Any, probe: Any) -> str | None:

    if not torch.is_tensor(answer):
        raise TypeError(f"expected a tensor (assign_weight.grad), got {type(answer).__name__}")
    fresh = copy.deepcopy(model)
    fresh.zero_grad(set_to_none=True)
    (fresh.text_vlad(tokens, mask, bn=fresh.video_bn, detach_assignment=False) @ probe).sum().backward()
    right = fresh.text_vlad.assign_weight.grad
    got = answer.detach()
    if got.shape != right.shape:
        raise ValueError(f"expected the shape {tuple(right.shape)} of assign_weight, got {tuple(got.shape)}")
    if torch.allclose(got, right, atol=1e-6, rtol=1e-4):
        return None
    if not bool(got.abs().sum() > 0):
        return ("the gradient is zero: the video branch detaches c_k unless you pass detach_assignment=False "
                "to text_vlad.")
    if torch.allclose(got, 2 * right, atol=1e-6, rtol=1e-4):
        return "that is twice the gradient: backward ran twice; zero the gradients (or rebuild m) first."
    return "run the video branch once on x_v, take <output, probe> summed, and call backward()."


@exercise("04.4", "the wordpiece with the largest mean ghost share, a string")
def _ghost_wordpiece(answer: Any, model: Any, texts: Any, tokenizer: Any) -> str | None:

    if not isinstance(answer, str):
        raise TypeError(f"expected a string, got {type(answer).__name__}")
    device = next(model.parameters()).device
    with torch.no_grad():
        tokens, tmask = model.text_tokens(texts.to(device))
        _, a = model.vlad.encode_text(tokens, tmask, return_assignments=True)
    ids = texts.input_ids.to(device)
    table = pd.DataFrame({"piece": tokenizer.convert_ids_to_tokens(ids[tmask].tolist()),
                          "ghost": (1 - a.sum(-1))[tmask].cpu().numpy(),
                          "last": a[..., -1][tmask].cpu().numpy()})
    stats = table.groupby("piece")["ghost"].agg(["mean", "count"])
    ranked = stats.query("count >= 5").sort_values("mean", ascending=False)
    if answer == ranked.index[0]:
        return None
    if answer == stats.sort_values("mean", ascending=False).index[0]:
        return "that wordpiece is rare: rank only the wordpieces seen at least 5 times."
    if answer == ranked.index[-1]:
        return "that is the wordpiece with the smallest ghost share: sort in decreasing order."
    if answer == table.groupby("piece")["last"].mean()[ranked.index].idxmax():
        return ("the assignments returned by encode_text hold the K real centers only: the ghost share is 1 "
                "minus their sum.")
    return "average the ghost share 1 - sum_k a_ik per wordpiece over the real tokens, keep count >= 5."


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
