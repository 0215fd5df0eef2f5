"""Re-ranking a dual encoder's top-k with a second scorer, and choosing the depth k and the fusion weight w on
the validation split (CLIP2TV's "alignment module ranks, matching module re-ranks its top-k").

Vocabulary: N_q queries (texts), N_g gallery videos, k candidates per query, w the matching weight.

    dual order of each query --first k--> candidates --scorer--> match logits (N_q, k)
    fused = (1 - w) * z(dual scores of the k) + w * z(match logits of the k)      z: per query, over its k
    new order = the k sorted by fused (ties: dual order), then ranks k+1 ... N_g unchanged

z standardises each query's k values to mean 0 and standard deviation 1, so w weighs two scores of unlike
scales (a cosine-like dual score, an unbounded logit) on one footing. w = 0 is the dual order, w = 1 the
scorer's order (the CLIP2TV inference, which replaces the score). The k candidates are scored once at the
largest k; every smaller k re-uses the first columns (the dual order is the same).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..engine.evaluate import retrieval_metrics

__all__ = [
    "standardise", "fuse", "top_candidates", "rerank_scored", "rerank", "RerankChoice", "select_rerank",
]


def standardise(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Per row: (x - mean) / std over the k columns, (N_q, k) -> (N_q, k); a constant row becomes 0.

    The population std (ddof 0); eps guards a constant row. A monotone map of each row, so it keeps every
    row's order (and its ties)."""
    centred = x - x.mean(1, keepdim=True)
    return centred / (centred.pow(2).mean(1, keepdim=True).sqrt() + eps)


def fuse(dual: Tensor, match: Tensor, weight: float) -> Tensor:
    """(1 - w) z(dual) + w z(match): (N_q, k) scores of the same candidates -> (N_q, k) fused scores."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"fuse: weight must be in [0, 1], got {weight}")
    if dual.shape != match.shape:
        raise ValueError(f"fuse: dual {tuple(dual.shape)} and match {tuple(match.shape)} must be (N_q, k)")
    return (1.0 - weight) * standardise(dual.float()) + weight * standardise(match.float())


def top_candidates(
    dual_sims: Tensor, score_fn: Callable[[Tensor, Tensor], Tensor], k: int
) -> tuple[Tensor, Tensor]:
    """The dual order of every query and the scorer's logits of its first k.

    Args:
        dual_sims: (N_q, N_g) dual-encoder similarities.
        score_fn: (query ids (P,), gallery ids (P,)) -> (P,) logits, called once on N_q * k pairs.
        k: candidates per query (clipped to N_g).
    Returns:
        order (N_q, N_g) long, the dual ranking (stable: ties keep the gallery order); logits (N_q, k) of
        ``order[:, :k]``.
    """
    n_q, n_g = dual_sims.shape
    k = max(1, min(k, n_g))
    order = dual_sims.argsort(dim=1, descending=True, stable=True)
    top = order[:, :k]
    logits = score_fn(torch.arange(n_q).repeat_interleave(k), top.flatten()).view(n_q, k)
    return order, logits.to(dual_sims.device, torch.float32)


def rerank_scored(
    dual_sims: Tensor, order: Tensor, logits: Tensor, k: int, weight: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Re-rank the first k of ``order`` by the fused score (module docstring), given the logits.

    Args:
        dual_sims: (N_q, N_g); order: (N_q, N_g) its dual ranking (:func:`top_candidates`).
        logits: (N_q, k') logits of ``order[:, :k']``, k' >= k (only the first k columns are used).
        k: re-rank depth; weight: w in [0, 1].
    Returns:
        scores (N_q, N_g): the dual scores, except the top k, which are lifted above every other item of
        their row and ordered by fused score (ties: dual order) - feed to ``evaluate.retrieval_metrics``;
        order (N_q, N_g) long: the new ranking. Only the top k are permuted among themselves; at w = 0 the
        ranking is the dual one.
    """
    n_g = dual_sims.shape[1]
    k = max(1, min(k, n_g))
    if logits.shape[0] != dual_sims.shape[0] or logits.shape[1] < k:
        raise ValueError(
            f"rerank: logits {tuple(logits.shape)} do not cover the top {k} of {dual_sims.shape[0]} queries"
        )
    top = order[:, :k]
    fused = fuse(dual_sims.gather(1, top), logits[:, :k].to(dual_sims.device), weight)
    new_top = top.gather(1, fused.argsort(dim=1, descending=True, stable=True))  # ties keep the dual order
    scores = dual_sims.clone()
    lift = dual_sims.max(1, keepdim=True).values + 1.0 + torch.arange(k - 1, -1, -1).to(dual_sims)
    scores.scatter_(1, new_top, lift)  # rank r of the top k gets row max + 1 + (k - 1 - r)
    return scores, torch.cat([new_top, order[:, k:]], 1)


def rerank(
    dual_sims: Tensor, score_fn: Callable[[Tensor, Tensor], Tensor], k: int, weight: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Re-rank each query's dual top-k by the fused score: :func:`top_candidates` + :func:`rerank_scored`.

    ``weight=1`` (default) orders the k by the scorer's logits alone, ``weight=0`` keeps the dual order.
    Returns (scores (N_q, N_g), order (N_q, N_g)); only the top k are permuted among themselves."""
    order, logits = top_candidates(dual_sims, score_fn, k)
    return rerank_scored(dual_sims, order, logits, k, weight)


@dataclass
class RerankChoice:
    """The (k, w) with the best validation t2v R@1, that R@1, and the grid: one dict per (k, w)."""

    k: int
    weight: float
    r1: float
    grid: list[dict[str, float]] = field(default_factory=list)


def select_rerank(
    dual_sims: Tensor,
    order: Tensor,
    logits: Tensor,
    query_masks: Tensor,
    ks: Sequence[int],
    weights: Sequence[float],
) -> RerankChoice:
    """Choose k and w by t2v R@1 on *validation* similarities (never call it with test ones).

    Args:
        dual_sims, order: (N_q, N_g) validation similarities and their dual order.
        logits: (N_q, >= max(ks)) scorer logits of ``order``'s first columns.
        query_masks: the validation ``EvalSet.query_masks``.
        ks, weights: the grid. Ties go to the smaller k (cheaper), then the smaller w (closer to the dual).
    """
    if not ks or not weights:
        raise ValueError("select_rerank: empty grid of ks or weights")
    best: RerankChoice | None = None
    grid = []
    for k in sorted(ks):
        for w in sorted(weights):
            scores, _ = rerank_scored(dual_sims, order, logits, k, w)
            r1 = retrieval_metrics(scores, query_masks)["t2v_R1"]
            grid.append({"k": k, "weight": w, "t2v_R1": r1})
            if best is None or r1 > best.r1:
                best = RerankChoice(k, w, r1)
    assert best is not None
    best.grid = grid
    return best
