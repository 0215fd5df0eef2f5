"""Retrieval metrics R@K, MdR, MnR for text->video and video->text (CE/MMT conventions, paper 4.1).

Layout of the similarity matrix everywhere in this module:

    sims: (N*C, N)   sims[i, j] = s(caption i, video j); the C captions of video j are rows j*C .. j*C+C-1.

N videos, C captions per video. MSRVTT "full" has C=20; the JSFusion "1k-A" protocol evaluates ONE fixed
caption per test video, which is simply C=1 (pick that caption's row per video before calling; nothing
else is special).

Ranks are 0-based. Ties are broken by averaging (McSherry & Najork 2008), as CE does: if the ground truth
shares its score with ``t - 1`` other items and ``g`` items score strictly higher, its rank is
``g + (t - 1) / 2`` (the mean of the positions the tied block occupies). A constant matrix therefore gives
chance-level ranks, not a perfect score. Recalls are percentages; MedR = median(rank) + 1 and
MeanR = mean(rank) + 1, so a perfect ranking has MedR = MeanR = 1.

``query_masks`` (N, C) bool marks which captions exist (MSRVTT: a few videos have 19 of 20):
  * t2v: rows with False are dropped as queries (their scores are never read, NaN allowed there).
  * v2t: rows with False are removed from the caption gallery: they can neither be retrieved nor push
    other captions down (CE sets them to distance 1e8, which is the same thing for finite scores).
    A video whose captions are all missing has no ground truth: ValueError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "METRIC_KEYS",
    "t2v_ranks",
    "v2t_ranks",
    "ranks_to_metrics",
    "t2v_metrics",
    "v2t_metrics",
    "format_metrics_table",
    "metrics_dataframe",
]

METRIC_KEYS: tuple[str, ...] = ("R1", "R5", "R10", "R50", "MedR", "MeanR")


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:  # numpy has no bfloat16
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _validate(sims: Any, query_masks: Any | None) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Check shapes/values; return sims (N*C, N) float, mask (N, C) bool, N, C."""
    s = _as_numpy(sims)
    if s.ndim != 2:
        raise ValueError(f"sims: expected a 2-D matrix (N*C captions, N videos), got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.floating):
        if not (np.issubdtype(s.dtype, np.integer) or s.dtype == np.bool_):
            raise ValueError(f"sims: expected a numeric matrix, got dtype {s.dtype}")
        s = s.astype(np.float64)
    num_rows, num_videos = s.shape
    if num_videos == 0 or num_rows == 0:
        raise ValueError(f"sims: empty matrix of shape {s.shape}")
    if num_rows % num_videos != 0:
        raise ValueError(
            f"sims: {num_rows} caption rows is not a multiple of {num_videos} videos; expected shape "
            f"(N*C, N) with the C captions of video j in rows j*C .. j*C+C-1"
        )
    caps = num_rows // num_videos
    if query_masks is None:
        mask = np.ones((num_videos, caps), dtype=bool)
    else:
        mask = _as_numpy(query_masks)
        if mask.shape != (num_videos, caps):
            raise ValueError(
                f"query_masks: expected shape (N, C) = ({num_videos}, {caps}) for sims of shape "
                f"{s.shape}, got {mask.shape}"
            )
        if mask.dtype != np.bool_:
            if not np.isin(mask, (0, 1)).all():
                raise ValueError("query_masks: expected booleans (or 0/1), got other values")
            mask = mask.astype(bool)
    valid_rows = mask.reshape(-1)
    bad = ~np.isfinite(s[valid_rows])
    if bad.any():
        r, c = np.argwhere(bad)[0]
        row = int(np.flatnonzero(valid_rows)[r])
        kind = "NaN" if np.isnan(s[row, c]) else "inf"
        raise ValueError(
            f"sims: {int(bad.sum())} non-finite value(s) in caption rows in use, first {kind} at "
            f"[{row}, {int(c)}] (caption {row % caps} of video {row // caps}); expected finite scores"
        )
    return s, mask, num_videos, caps


def t2v_ranks(sims: Any, query_masks: Any | None = None) -> np.ndarray:
    """0-based, tie-averaged rank of the ground-truth video for each caption query.

    Args:
        sims: (N*C, N) similarities, numpy or torch; captions of video j in rows j*C .. j*C+C-1.
        query_masks: optional (N, C) bool, False = missing caption (dropped as a query).
    Returns:
        (Q,) float64 ranks in row order, Q = number of valid captions (N*C without masks).
        rank = #{videos scoring strictly higher} + (#{videos tied with the GT, GT included} - 1) / 2.
    """
    s, mask, num_videos, caps = _validate(sims, query_masks)
    rows = np.flatnonzero(mask.reshape(-1))
    s = s[rows]  # (Q, N)
    gt = s[np.arange(rows.size), rows // caps][:, None]  # (Q, 1)
    higher = (s > gt).sum(axis=1)
    tied = (s == gt).sum(axis=1)  # includes the GT itself, so >= 1
    return higher + (tied - 1) / 2.0


def v2t_ranks(sims: Any, query_masks: Any | None = None) -> np.ndarray:
    """0-based, tie-averaged rank of the best-ranked ground-truth caption for each video query.

    Each video ranks every valid caption (the gallery of size Q); its rank is the minimum over its own
    valid captions of the tie-averaged rank (CE/VSE convention). The other ground-truth captions of the
    same video stay in the gallery, as in CE. Because the tie-averaged rank is strictly decreasing in the
    score, the minimum is reached by the highest-scoring ground-truth caption, so only that one is ranked.
    Note (as CE notes): with C > 1 and a constant matrix this gives (Q - 1) / 2, worse than the chance
    level of the best of C captions.

    Args:
        sims: (N*C, N) similarities (same layout as for ``t2v_ranks``).
        query_masks: optional (N, C) bool, False = missing caption (removed from the gallery).
    Returns:
        (N,) float64 ranks, one per video.
    """
    s, mask, num_videos, caps = _validate(sims, query_masks)
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise ValueError(
            f"query_masks: video(s) {empty[:10].tolist()} have no valid caption, so video->text "
            f"retrieval has no ground truth for them"
        )
    valid_rows = mask.reshape(-1)
    gallery = s[valid_rows]  # (Q, N)
    per_video = s.reshape(num_videos, caps, num_videos)  # [j, c, k] = s(caption c of video j, video k)
    own = per_video[np.arange(num_videos), :, np.arange(num_videos)]  # (N, C): own captions' scores
    best = np.where(mask, own, -np.inf).max(axis=1)  # (N,), finite since every video has a caption
    higher = (gallery > best[None, :]).sum(axis=0)
    tied = (gallery == best[None, :]).sum(axis=0)
    return higher + (tied - 1) / 2.0


def ranks_to_metrics(ranks: Any) -> dict[str, float]:
    """R@1/5/10/50 (percent of queries with 0-based rank < K), MedR = median + 1, MeanR = mean + 1.

    As CE's ``cols2metrics``, R@1 counts rank == 0 only: a ground truth tied at the top (rank 0.5 after
    tie averaging) is not a hit at 1, while R@5/10/50 count ranks < K (a 4.5 counts at 5).

    Args:
        ranks: (Q,) 0-based ranks (may be fractional after tie averaging).
    Returns:
        dict with keys ``METRIC_KEYS``, python floats.
    """
    r = np.asarray(ranks, dtype=np.float64).reshape(-1)
    if r.size == 0:
        raise ValueError("ranks: no queries to evaluate")
    out = {f"R{k}": float(100.0 * np.mean(r < k)) for k in (1, 5, 10, 50)}
    out["R1"] = float(100.0 * np.mean(r == 0))
    out["MedR"] = float(np.median(r) + 1.0)
    out["MeanR"] = float(np.mean(r) + 1.0)
    return out


def t2v_metrics(sims: Any, query_masks: Any | None = None) -> dict[str, float]:
    """Text->video metrics: each valid caption row of ``sims`` (N*C, N) is a query (see ``t2v_ranks``)."""
    return ranks_to_metrics(t2v_ranks(sims, query_masks))


def v2t_metrics(sims: Any, query_masks: Any | None = None) -> dict[str, float]:
    """Video->text metrics: each of the N videos is a query (see ``v2t_ranks``)."""
    return ranks_to_metrics(v2t_ranks(sims, query_masks))


def format_metrics_table(results: Mapping[str, Mapping[str, float]], digits: int = 1) -> str:
    """Markdown table: one row per name, columns R1 R5 R10 R50 MedR MeanR (missing keys print ``-``).

    Args:
        results: e.g. ``{"t2v": t2v_metrics(s), "v2t": v2t_metrics(s)}``.
        digits: decimals shown.
    """
    header = "| name | " + " | ".join(METRIC_KEYS) + " |"
    sep = "|---|" + "---:|" * len(METRIC_KEYS)
    lines = [header, sep]
    for name, metrics in results.items():
        cells = [f"{metrics[k]:.{digits}f}" if k in metrics else "-" for k in METRIC_KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metrics_dataframe(results: Mapping[str, Mapping[str, float]]):
    """The same table as a pandas DataFrame (index = names, columns = ``METRIC_KEYS``)."""
    import pandas as pd

    df = pd.DataFrame.from_dict({k: dict(v) for k, v in results.items()}, orient="index")
    return df.reindex(columns=list(METRIC_KEYS))
