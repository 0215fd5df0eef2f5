"""losses.py against hand-computed values, naive double loops, gradient signs and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from t2vlad_lib.model.losses import (
    HardestNegativeRankingLoss,
    InfoNCELoss,
    MaxMarginRankingLoss,
    hardest_negative_ranking_loss,
    info_nce_loss,
    make_ranking_loss,
    max_margin_ranking_loss,
)

# rows = texts, columns = videos, positives on the diagonal (0.5, 0.4, 0.7); margin 0.1
S3 = torch.tensor([[0.5, 0.3, 0.6], [0.1, 0.4, 0.2], [0.45, 0.0, 0.7]], dtype=torch.float64)


# ---------------------------------------------------------------- naive references
def naive_max_margin(s: torch.Tensor, m: float) -> float:
    b = s.shape[0]
    total = 0.0
    for i in range(b):
        for j in range(b):
            if i != j:
                total += max(0.0, m - float(s[i, i]) + float(s[i, j]))  # t2v: other video j in row i
                total += max(0.0, m - float(s[i, i]) + float(s[j, i]))  # v2t: other text j in column i
    return total / (2 * b * (b - 1))


def naive_hardest(s: torch.Tensor, m: float) -> float:
    b = s.shape[0]
    total = 0.0
    for i in range(b):
        worst_video = max(float(s[i, j]) for j in range(b) if j != i)
        worst_text = max(float(s[j, i]) for j in range(b) if j != i)
        total += max(0.0, m - float(s[i, i]) + worst_video) + max(0.0, m - float(s[i, i]) + worst_text)
    return total / b


def naive_info_nce(s: torch.Tensor, tau: float) -> float:
    b = s.shape[0]
    rows = cols = 0.0
    for i in range(b):
        rows += -float(s[i, i]) / tau + math.log(sum(math.exp(float(s[i, j]) / tau) for j in range(b)))
        cols += -float(s[i, i]) / tau + math.log(sum(math.exp(float(s[j, i]) / tau) for j in range(b)))
    return 0.5 * (rows + cols) / b


# ---------------------------------------------------------------- hand-computed values
def test_max_margin_hand_computed_3x3() -> None:
    # t2v hinge relu(0.1 - s_ii + s_ij):
    #   row 0: j=1: 0.1-0.5+0.3 = -0.1 -> 0;   j=2: 0.1-0.5+0.6 = 0.2
    #   row 1: j=0: 0.1-0.4+0.1 = -0.2 -> 0;   j=2: 0.1-0.4+0.2 = -0.1 -> 0
    #   row 2: j=0: 0.1-0.7+0.45 = -0.15 -> 0; j=1: 0.1-0.7+0.0 = -0.6 -> 0      t2v sum = 0.2
    # v2t hinge relu(0.1 - s_jj + s_ij) down column j:
    #   col 0: i=1: 0.1-0.5+0.1 = -0.3 -> 0;   i=2: 0.1-0.5+0.45 = 0.05
    #   col 1: i=0: 0.1-0.4+0.3 = 0.0;         i=2: 0.1-0.4+0.0 = -0.3 -> 0
    #   col 2: i=0: 0.1-0.7+0.6 = 0.0;         i=1: 0.1-0.7+0.2 = -0.4 -> 0    v2t sum = 0.05
    # mean over 2 * B * (B-1) = 12 terms: 0.25 / 12
    loss = max_margin_ranking_loss(S3, margin=0.1)
    assert loss.item() == pytest.approx(0.25 / 12, abs=1e-12)


def test_hardest_hand_computed_3x3() -> None:
    # i=0: hardest video in row 0 = 0.6 -> relu(0.1-0.5+0.6) = 0.2; hardest text in col 0 = 0.45 -> 0.05
    # i=1: row 1 -> 0.2: relu(0.1-0.4+0.2) = 0;  col 1 -> 0.3: relu(0.1-0.4+0.3) = 0
    # i=2: row 2 -> 0.45: relu(0.1-0.7+0.45) = 0; col 2 -> 0.6: relu(0.1-0.7+0.6) = 0
    # sum = 0.25 (VSE++), batch mean = 0.25 / 3
    assert hardest_negative_ranking_loss(S3, margin=0.1).item() == pytest.approx(0.25 / 3, abs=1e-12)
    summed = hardest_negative_ranking_loss(S3, margin=0.1, reduction="sum")
    assert summed.item() == pytest.approx(0.25, abs=1e-12)


def test_info_nce_hand_computed_2x2() -> None:
    # S = I, tau = 1: each row/column is softmax(1, 0); -log(e / (e + 1)) = log(1 + e^-1) in both directions
    loss = info_nce_loss(torch.eye(2, dtype=torch.float64), temperature=1.0)
    assert loss.item() == pytest.approx(math.log(1.0 + math.exp(-1.0)), abs=1e-12)


# ---------------------------------------------------------------- naive loops on random matrices
@pytest.mark.parametrize("b", [2, 5, 9])
def test_match_naive_loops(b: int) -> None:
    g = torch.Generator().manual_seed(b)
    s = torch.rand(b, b, generator=g, dtype=torch.float64) * 2 - 1
    for m in (0.02, 0.2, 0.7):
        assert max_margin_ranking_loss(s, m).item() == pytest.approx(naive_max_margin(s, m), abs=1e-12)
        assert hardest_negative_ranking_loss(s, m).item() == pytest.approx(naive_hardest(s, m), abs=1e-12)
    assert info_nce_loss(s, 0.1).item() == pytest.approx(naive_info_nce(s, 0.1), rel=1e-10)
    assert MaxMarginRankingLoss(0.2)(s).item() == pytest.approx(naive_max_margin(s, 0.2), abs=1e-12)
    assert HardestNegativeRankingLoss(0.2)(s).item() == pytest.approx(naive_hardest(s, 0.2), abs=1e-12)
    assert InfoNCELoss(0.1)(s).item() == pytest.approx(naive_info_nce(s, 0.1), rel=1e-10)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize(
    "fn", [lambda s: max_margin_ranking_loss(s, 1.0), lambda s: hardest_negative_ranking_loss(s, 1.0)]
)
def test_gradient_signs_when_active(fn) -> None:
    # sims in [0, 1) and margin 1: every hinge is active (1 - s_ii + s_ij > 0)
    s = torch.rand(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s.requires_grad_(True)
    fn(s).backward()
    diag = s.grad.diagonal()
    assert bool((diag < 0).all()), "raising a positive score must lower the loss"
    off = s.grad[~torch.eye(6, dtype=torch.bool)]
    assert bool((off >= 0).all()), "raising a negative score must not lower the loss"
    # and a finite step on one positive does lower it
    with torch.no_grad():
        bumped = s.detach().clone()
        bumped[2, 2] += 1e-3
        assert fn(bumped).item() < fn(s.detach()).item()


def test_info_nce_gradient_sign_and_gradcheck() -> None:
    s = torch.rand(5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64, requires_grad=True)
    info_nce_loss(s, 0.5).backward()
    assert bool((s.grad.diagonal() < 0).all())
    s2 = s.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: info_nce_loss(x, 0.5), (s2,))
    # max-margin is piecewise linear; away from its kinks gradcheck holds too
    assert torch.autograd.gradcheck(lambda x: max_margin_ranking_loss(x, 1.0), (s2,))


def test_zero_loss_when_positives_clear_the_margin() -> None:
    noise = torch.rand(8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.1
    s = (torch.eye(8, dtype=torch.float64) + noise).requires_grad_(True)  # positives >= 1, negatives < 0.1
    for loss_fn in (MaxMarginRankingLoss(0.2), HardestNegativeRankingLoss(0.2)):
        loss = loss_fn(s)
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, s)
        assert bool((grad == 0).all())


def test_single_pair_batch_is_zero_and_differentiable() -> None:
    s = torch.tensor([[0.3]], requires_grad=True)
    for fn in (max_margin_ranking_loss, hardest_negative_ranking_loss):
        loss = fn(s)
        assert loss.item() == 0.0
        loss.backward()


# ---------------------------------------------------------------- factory and bad input
def test_factory() -> None:
    loss = make_ranking_loss("max_margin", None)
    assert isinstance(loss, MaxMarginRankingLoss)
    assert loss.margin == 0.02
    loss = make_ranking_loss("hardest", None)
    assert isinstance(loss, HardestNegativeRankingLoss)
    assert loss.margin == 0.2
    assert make_ranking_loss("hardest", 0.5).margin == 0.5
    with pytest.raises(ValueError, match="valid names are max_margin, hardest"):
        make_ranking_loss("triplet", 0.1)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"square \(B, B\).*got shape \(3, 4\)"):
        max_margin_ranking_loss(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="square"):
        hardest_negative_ranking_loss(torch.zeros(4))
    bad = torch.zeros(3, 3)
    bad[1, 2] = float("nan")
    for fn in (max_margin_ranking_loss, hardest_negative_ranking_loss, info_nce_loss):
        with pytest.raises(ValueError, match=r"non-finite value nan at \[1, 2\]"):
            fn(bad)
    with pytest.raises(ValueError, match="margin"):
        MaxMarginRankingLoss(-0.1)
    with pytest.raises(ValueError, match="reduction"):
        HardestNegativeRankingLoss(0.2, reduction="max")
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(0.0)
    with pytest.raises(ValueError, match="floating-point"):
        max_margin_ranking_loss(torch.eye(3, dtype=torch.long))
