"""Bidirectional ranking losses on a (B, B) text-video similarity matrix (paper 3.5, last paragraph).

Convention (same as ``metrics.py``): ``sims[i, j] = s(text i, video j)`` and the diagonal holds the B
positive pairs. "t2v" compares a positive with the other videos in its row (s_ij, j != i); "v2t" compares
it with the other texts in its column (s_ji, j != i).

* ``MaxMarginRankingLoss`` - the paper's loss (margin 0.02, following CE / Miech et al.): the mean hinge
  over every negative, both directions.
* ``HardestNegativeRankingLoss`` - VSE++ "max violation", what the public PaddlePaddle port trains with
  (margin 0.2): only the hardest negative of each positive, both directions.
* ``InfoNCELoss`` - symmetric cross-entropy over rows and columns (for the mean-pooling baseline; not in
  the paper).

A batch of one pair has no negatives: the two ranking losses return 0 (still attached to the graph).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LOSS_NAMES",
    "DEFAULT_MARGINS",
    "max_margin_ranking_loss",
    "hardest_negative_ranking_loss",
    "info_nce_loss",
    "MaxMarginRankingLoss",
    "HardestNegativeRankingLoss",
    "InfoNCELoss",
    "make_ranking_loss",
]

LOSS_NAMES: tuple[str, ...] = ("max_margin", "hardest", "infonce")
DEFAULT_MARGINS: dict[str, float] = {"max_margin": 0.02, "hardest": 0.2}


def _check_sims(sims: Tensor) -> int:
    """Validate a (B, B) finite float similarity matrix; return B."""
    if not isinstance(sims, Tensor):
        raise ValueError(f"sims: expected a torch.Tensor, got {type(sims).__name__}")
    if sims.ndim != 2 or sims.shape[0] != sims.shape[1]:
        raise ValueError(
            f"sims: expected a square (B, B) text x video matrix with positives on the diagonal, "
            f"got shape {tuple(sims.shape)}"
        )
    if sims.shape[0] == 0:
        raise ValueError("sims: empty batch (B = 0)")
    if not sims.is_floating_point():
        raise ValueError(f"sims: expected a floating-point tensor, got {sims.dtype}")
    finite = torch.isfinite(sims)
    if not bool(finite.all()):
        i, j = (~finite).nonzero()[0].tolist()
        raise ValueError(f"sims: non-finite value {sims[i, j].item()} at [{i}, {j}]; expected finite scores")
    return sims.shape[0]


def _check_margin(margin: float) -> float:
    margin = float(margin)
    if not margin >= 0.0:  # also rejects NaN
        raise ValueError(f"margin: expected a number >= 0, got {margin}")
    return margin


def max_margin_ranking_loss(sims: Tensor, margin: float = 0.02) -> Tensor:
    """Bidirectional max-margin ranking loss averaged over all negatives (paper 4.1, CE's loss).

        L = 1 / (2 B (B-1)) * sum_i sum_{j != i} [ relu(m - s_ii + s_ij) + relu(m - s_ii + s_ji) ]

    Normalisation: the mean over the 2 B (B-1) off-diagonal hinge terms, i.e. the average of the t2v
    and v2t means. This is CE's ``fix_norm=True``; without it (Miech's original) the B diagonal terms,
    each a constant ``m`` with no gradient, were included in the mean too.

    Args:
        sims: (B, B) similarities, sims[i, j] = s(text i, video j); positives on the diagonal.
        margin: m.
    Returns:
        scalar tensor.
    """
    b = _check_sims(sims)
    margin = _check_margin(margin)
    if b == 1:
        return sims.sum() * 0.0
    pos = sims.diagonal()  # (B,)
    off = ~torch.eye(b, dtype=torch.bool, device=sims.device)
    t2v = F.relu(margin - pos[:, None] + sims)  # [i, j] = relu(m - s_ii + s_ij): row i, other videos
    v2t = F.relu(margin - pos[None, :] + sims)  # [i, j] = relu(m - s_jj + s_ij): column j, other texts
    return (t2v[off].sum() + v2t[off].sum()) / (2 * b * (b - 1))


def hardest_negative_ranking_loss(sims: Tensor, margin: float = 0.2, reduction: str = "mean") -> Tensor:
    """Bidirectional hardest-negative ranking loss (VSE++ "max violation"; the port's training loss).

        l_i = relu(m - s_ii + max_{j != i} s_ij) + relu(m - s_ii + max_{j != i} s_ji)
        L = (1 / B) sum_i l_i   (reduction="mean", ours)      or   sum_i l_i   (reduction="sum", VSE++)

    We default to the batch mean so the loss scale does not grow with B (it equals VSE++'s sum / B);
    ``reduction="sum"`` gives VSE++'s value. With ties for the hardest negative, the gradient goes to
    one of them (``torch.max``).

    Args:
        sims: (B, B) similarities, positives on the diagonal.
        margin: m.
        reduction: "mean" or "sum" over the B positives.
    Returns:
        scalar tensor.
    """
    b = _check_sims(sims)
    margin = _check_margin(margin)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
    if b == 1:
        return sims.sum() * 0.0
    pos = sims.diagonal()
    eye = torch.eye(b, dtype=torch.bool, device=sims.device)
    negs = sims.masked_fill(eye, float("-inf"))
    hardest_video = negs.max(dim=1).values  # (B,): hardest other video for text i
    hardest_text = negs.max(dim=0).values  # (B,): hardest other text for video i
    per_pair = F.relu(margin - pos + hardest_video) + F.relu(margin - pos + hardest_text)
    return per_pair.mean() if reduction == "mean" else per_pair.sum()


def info_nce_loss(sims: Tensor, temperature: float = 0.05) -> Tensor:
    """Symmetric InfoNCE: cross-entropy of the softmax over each row and each column (not in the paper).

        L = 1/2 [ -(1/B) sum_i log softmax_j(s_ij / tau)_i  -  (1/B) sum_j log softmax_i(s_ij / tau)_j ]

    Args:
        sims: (B, B) similarities, positives on the diagonal.
        temperature: tau > 0.
    Returns:
        scalar tensor.
    """
    b = _check_sims(sims)
    temperature = float(temperature)
    if not temperature > 0.0:
        raise ValueError(f"temperature: expected a number > 0, got {temperature}")
    logits = sims / temperature
    target = torch.arange(b, device=sims.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


class MaxMarginRankingLoss(nn.Module):
    """Module form of ``max_margin_ranking_loss`` (the paper's loss, margin 0.02).

    forward: sims (B, B) -> scalar.
    """

    def __init__(self, margin: float = 0.02) -> None:
        super().__init__()
        self.margin = _check_margin(margin)

    def forward(self, sims: Tensor) -> Tensor:
        return max_margin_ranking_loss(sims, self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


class HardestNegativeRankingLoss(nn.Module):
    """Module form of ``hardest_negative_ranking_loss`` (VSE++ / the port, margin 0.2, batch mean).

    forward: sims (B, B) -> scalar.
    """

    def __init__(self, margin: float = 0.2, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
        self.margin = _check_margin(margin)
        self.reduction = reduction

    def forward(self, sims: Tensor) -> Tensor:
        return hardest_negative_ranking_loss(sims, self.margin, self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, reduction={self.reduction!r}"


class InfoNCELoss(nn.Module):
    """Module form of ``info_nce_loss`` (fixed temperature). forward: sims (B, B) -> scalar."""

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        temperature = float(temperature)
        if not temperature > 0.0:
            raise ValueError(f"temperature: expected a number > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, sims: Tensor) -> Tensor:
        return info_nce_loss(sims, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


def make_ranking_loss(name: str, margin: float | None = None, temperature: float | None = None) -> nn.Module:
    """Build a ranking loss by config name.

    Args:
        name: "max_margin" (paper, default margin 0.02), "hardest" (VSE++ / port, default margin 0.2) or
            "infonce" (symmetric InfoNCE, the mean-pooling baseline's loss; ``margin`` is ignored).
        margin: overrides the default when not None.
        temperature: InfoNCE's tau (None = 0.05); ignored by the margin losses.
    """
    if name not in LOSS_NAMES:
        raise ValueError(f"loss name: unknown {name!r}; valid names are {', '.join(LOSS_NAMES)}")
    if name == "infonce":
        return InfoNCELoss(0.05 if temperature is None else temperature)
    m = DEFAULT_MARGINS[name] if margin is None else margin
    if name == "max_margin":
        return MaxMarginRankingLoss(m)
    return HardestNegativeRankingLoss(m)
