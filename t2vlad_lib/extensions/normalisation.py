"""Hubness of a text->video similarity matrix, and two inference-time fixes for it (not in the paper).

Vocabulary: ``sims`` (N_t, N_v) with sims[i, j] = s(text i, video j) (the matrix of
:func:`evaluate.evaluate`, real captions only); ``bank_sims`` (N_b, N_v), N_b bank queries against the same
N_v gallery videos. Every query ranks the videos of its row, as in ``metrics.t2v_ranks``.

* Hubness (Radovanovic et al. 2010): a few videos are in the top-k of many queries. The k-occurrence
  N_k(j) counts the queries with video j in their top-k; its skewness measures hubness, and the videos
  with N_k = 0 are "anti-hubs" (never retrieved).
* Dual softmax (CAMoE / DSL, Cheng et al. 2021): re-weight each score by a softmax over the *queries* of
  its column, so a video that many queries score highly (a hub) counts less for each of them.
* Query-bank normalisation (QB-Norm, Bogolin et al. 2022): the inverted softmax of Smith et al. 2017, with
  the column normaliser taken from a bank of training queries, applied by the "dynamic inverted softmax"
  rule (only to queries whose top-1 video is a hub of the bank).

Both fixes return an (N_t, N_v) float64 matrix that ``evaluate.retrieval_metrics`` takes. They are for
text->video only: rows are ranked separately, so rows may have different units, and the v2t numbers of a
normalised matrix mean nothing. Ties: k-occurrences count tied videos fractionally (the expected count
under a random tie-break, as ``metrics.py`` averages tied ranks), and nothing here breaks ties by index.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..core.utils import eval_mode
from ..engine.evaluate import encode_texts, encode_videos, retrieval_metrics, similarity_matrix

__all__ = ["Hubness", "k_occurrence", "hubness", "dual_softmax", "querybank_normalise", "querybank_sims",
           "normalisation_table"]


def _check(sims: Any, name: str = "sims", allow_no_rows: bool = False) -> Tensor:
    """A finite 2-D float64 copy of ``sims`` (torch or numpy)."""
    s = sims if isinstance(sims, Tensor) else torch.as_tensor(np.asarray(sims))
    if s.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (queries, videos) matrix, got shape {tuple(s.shape)}")
    if s.shape[1] == 0 or (s.shape[0] == 0 and not allow_no_rows):
        raise ValueError(f"{name}: empty matrix of shape {tuple(s.shape)}")
    if not (s.is_floating_point() or s.dtype in (torch.bool, torch.int32, torch.int64)):
        raise ValueError(f"{name}: expected a numeric matrix, got {s.dtype}")
    s = s.detach().cpu().to(torch.float64)
    if not bool(torch.isfinite(s).all()):
        i, j = (~torch.isfinite(s)).nonzero()[0].tolist()
        raise ValueError(f"{name}: non-finite value {s[i, j].item()} at [{i}, {j}]; expected finite scores")
    return s


def _check_temperature(temperature: float) -> float:
    tau = float(temperature)
    if not 0.0 < tau < math.inf:  # also rejects NaN
        raise ValueError(f"temperature: expected a finite number > 0, got {temperature}")
    return tau


def k_occurrence(sims: Any, k: int) -> Tensor:
    """N_k(j): how many queries have video j in their top-k, ties counted fractionally.

    If the k-th largest score of a row is shared by ``t`` videos and ``g`` videos score strictly higher,
    each of the ``t`` tied videos gets (k - g) / t: the probability that a random tie-break puts it in the
    top-k. So every row hands out exactly k, and sum_j N_k(j) = N_t * k.

    Args:
        sims: (N_t, N_v) scores of N_t queries against N_v gallery videos (N_t = 0 allowed).
        k: 1 <= k <= N_v.
    Returns:
        (N_v,) float64 k-occurrences.
    """
    s = _check(sims, allow_no_rows=True)
    if not (isinstance(k, int) and 1 <= k <= s.shape[1]):
        raise ValueError(f"k: expected an integer in [1, N_v = {s.shape[1]}], got {k!r}")
    kth = s.topk(k, dim=1).values[:, -1:]  # (N_t, 1): the k-th largest score of each row
    above, tied = s > kth, s == kth  # (N_t, N_v) each
    slots = k - above.sum(1, keepdim=True)  # (N_t, 1): top-k places left for the tied block, >= 1
    credit = above.double() + tied.double() * slots / tied.sum(1, keepdim=True)
    return credit.sum(0)


class Hubness(NamedTuple):
    """skew: skewness of the k-occurrence distribution (0 = symmetric, > 0 = a few hubs);
    anti_hubs: share of gallery videos in no query's top-k (N_k = 0), in [0, 1]."""

    skew: float
    anti_hubs: float


def hubness(sims: Any, k: int = 10) -> Hubness:
    """The standard hubness measure: the skewness of N_k over the N_v videos (Radovanovic et al. 2010).

        S_k = E[(N_k - mu)^3] / E[(N_k - mu)^2]^(3/2)     (population moments; mu = N_t k / N_v)

    A constant N_k (every video retrieved equally often) has skewness 0 here (scipy gives NaN).

    Args:
        sims: (N_t, N_v) scores.
        k: the neighbourhood size (10 is common; at most N_v).
    """
    occ = k_occurrence(sims, k)
    dev = occ - occ.mean()
    m2, m3 = float((dev**2).mean()), float((dev**3).mean())
    # a spread below rounding (fractional ties) is no spread
    skew = 0.0 if m2 <= 1e-24 * float(occ.mean()) ** 2 else m3 / m2**1.5
    return Hubness(skew, float((occ == 0).double().mean()))


def dual_softmax(sims: Any, temperature: float = 0.05, mode: str = "log") -> Tensor:
    """Dual softmax at inference (CAMoE's DSL): weight each score by a softmax over the queries of its column.

        mode="log":      s'_ij = s_ij + tau * log softmax_i(s_ij / tau)      (softmax over the N_t queries)
        mode="product":  s'_ij = s_ij * softmax_i(s_ij / tau)                (CAMoE's released inference)

    "log" ranks each row like softmax_j(s_ij / tau) * softmax_i(s_ij / tau), the two softmaxes of the DSL
    loss; it equals 2 s_ij - tau * logsumexp_i(s_ij / tau), so a video column that many queries score high
    (a hub) is pushed down. "product" needs s >= 0: a larger prior makes a negative score more negative.

    Caveats: it needs the whole query set at once (one query's ranking depends on the other queries), and
    it assumes roughly one video per query and one query per video (a video with many true queries is
    penalised as if it were a hub). Exactly true: with one query (N_t = 1) the softmax is 1 and s' = s.
    As tau -> inf, "log" tends to 2 s_ij - mean_i s_ij - tau log N_t (column centring), "product" to s / N_t.

    Args:
        sims: (N_t, N_v) text->video scores of the whole query set.
        temperature: tau > 0, in the units of the scores.
        mode: "log" or "product".
    Returns:
        (N_t, N_v) float64 scores; rank rows only (text->video).
    """
    s, tau = _check(sims), _check_temperature(temperature)
    if mode == "log":
        return s + tau * torch.log_softmax(s / tau, dim=0)
    if mode == "product":
        return s * torch.softmax(s / tau, dim=0)
    raise ValueError(f"mode: expected 'log' or 'product', got {mode!r}")


def querybank_normalise(sims: Any, bank_sims: Any, temperature: float = 0.05, k: int = 1) -> Tensor:
    """QB-Norm, dynamic inverted softmax (Bogolin et al. 2022; the inverted softmax of Smith et al. 2017).

    The bank's N_b queries define, for each video j, a normaliser and whether j is a hub of the bank:

        log Z_j = tau * logsumexp_b(bank_bj / tau)          (N_v,), a soft max of the bank's scores for j
        A = { j : N_k(j) > 0 w.r.t. the bank }             videos in some bank query's top-k ("activated")
        s'_ij = s_ij - log Z_j   if the top-1 video of query i is in A,   else s'_ij = s_ij

    A normalised row ranks like the inverted softmax exp(s_ij / tau) / sum_b exp(bank_bj / tau) (log, times
    tau). The rule gates whole queries, as the paper does, not single videos: within a row, normalised and
    raw scores are in different units and must not be compared. Under ties at the top of row i, the row is
    normalised if any of its tied top videos is in A (no tie-break by index). Exactly true: a row whose
    top-1 is not in A is unchanged (so is every row with an empty bank, N_b = 0); a bank that scores every
    video alike (bank_bj = c_b) gives one Z for all j, so every ranking is unchanged. Not true: tau -> inf
    is no identity: log Z_j -> mean_b bank_bj + tau log N_b (centring by the bank's mean); tau -> 0 gives
    s_ij - max_b bank_bj.

    The bank must be queries of the *training* split (QB-Norm's choice), never test queries.

    Args:
        sims: (N_t, N_v) text->video scores of the test queries.
        bank_sims: (N_b, N_v) scores of the bank queries against the same N_v videos.
        temperature: tau > 0 (the paper's beta = 20 is tau = 0.05 for cosine scores).
        k: the bank's neighbourhood for the activated set (the paper's default 1).
    Returns:
        (N_t, N_v) float64 scores; rank rows only (text->video).
    """
    s, tau = _check(sims), _check_temperature(temperature)
    bank = _check(bank_sims, "bank_sims", allow_no_rows=True)
    if bank.shape[1] != s.shape[1]:
        raise ValueError(f"bank_sims: {bank.shape[1]} videos, sims {s.shape[1]}; expected the same gallery")
    out = s.clone()
    if bank.shape[0] == 0:
        return out
    activated = k_occurrence(bank, k) > 0  # (N_v,)
    top = s == s.max(dim=1, keepdim=True).values  # (N_t, N_v): each row's top-1 (tied block)
    gate = (top & activated).any(dim=1)  # (N_t,)
    log_z = tau * torch.logsumexp(bank / tau, dim=0)  # (N_v,)
    out[gate] = s[gate] - log_z
    return out


@torch.no_grad()
def querybank_sims(model: torch.nn.Module, dataset: Any, videos: Any, batch_size: int = 256) -> Tensor:
    """(N_b, N_v) scores of every caption of ``dataset`` (the training split: N_b = its captions) against
    already-encoded videos, in chunks of captions (no (N_b, L, H) batch at once)."""
    rows = []
    for i in range(0, len(dataset.captions), batch_size):
        texts = dataset.text_batch(list(range(i, min(i + batch_size, len(dataset.captions)))))
        rows.append(similarity_matrix(model, encode_texts(model, texts, batch_size), videos))
    return torch.cat(rows)


def normalisation_table(run: Any, split: str = "test", dsl_temperature: float = 0.05,
                        qb_temperature: float = 0.05, qb_k: int = 1, hub_k: int = 10, batch_size: int = 256):
    """Text->video metrics of a trained run with plain, dual-softmax and QB-Norm scores: a separate table.

    Rows: "plain" (the model's own scores), "dual softmax", "QB-Norm". Columns: ``scores`` ("plain" or
    "normalised at inference": keep the two kinds apart, never in the run's results table), ``needs``
    (what the normalisation uses), t2v R1 / R5 / R10 (%) / MedR, ``hub_skew`` and ``anti_hubs (%)`` of
    that row's matrix at ``hub_k`` (the plain row gives the plain matrix's), and ``queries_changed`` (%).

    Every video and caption is encoded once. The query bank is the *training* split's captions
    (``run.data.train``, all of them) against the evaluated gallery, never the test or validation
    captions. Temperatures are not tuned here; tune them with ``split="val"``, not on the test split.

    Args:
        run: a :class:`runs.LoadedRun` (any object with ``model`` and ``data``, a ``pipeline.Prepared``).
        split: "test" or "val", the evaluation set whose gallery and queries are used.
    Returns:
        pandas DataFrame indexed by method.
    """
    import pandas as pd

    model, data = run.model, run.data
    evalset = {"test": data.test, "val": data.val}.get(split)
    if evalset is None:
        raise ValueError(f"split: expected 'test' or 'val' (when the data has one), got {split!r}")
    with eval_mode(model):
        videos = encode_videos(model, evalset.videos, batch_size)
        sims = similarity_matrix(model, encode_texts(model, evalset.texts, batch_size), videos)
        bank = querybank_sims(model, data.train, videos, batch_size)
    norm = "normalised at inference"
    variants = {
        "plain": (sims.double(), "plain", "-"),
        "dual softmax": (dual_softmax(sims, dsl_temperature), norm, f"all {split} queries"),
        "QB-Norm": (querybank_normalise(sims, bank, qb_temperature, qb_k), norm,
                    f"bank of {len(bank)} training captions"),
    }
    rows = {}
    for name, (scores, kind, needs) in variants.items():
        m = retrieval_metrics(scores, evalset.query_masks)
        hub = hubness(scores, hub_k)
        changed = (scores != sims.double()).any(dim=1).double().mean().item()
        rows[name] = {
            "scores": kind, "needs": needs, **{k: m[f"t2v_{k}"] for k in ("R1", "R5", "R10", "MedR")},
            "hub_skew": hub.skew, "anti_hubs (%)": 100 * hub.anti_hubs, "queries_changed": 100 * changed,
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = f"t2v, {split} split"
    return table
