"""Listwise training of the matching head on the dual encoder's own top-k: the candidate lists, the loss by
hand, and a training step whose gradient reaches the head."""

import math

import pytest
import torch

from t2vlad_lib.extensions.matching import (
    MatchingHead,
    MatchingRecipe,
    _pair_loss,
    listwise_candidates,
    listwise_loss,
)


def test_listwise_loss_by_hand():
    """Logits (2, 0, -1), the positive first: -log(e^2 / (e^2 + e^0 + e^-1)) = log(1 + e^-2 + e^-3)."""
    logits = torch.tensor([[2.0, 0.0, -1.0], [2.0, 0.0, -1.0]])
    want = [math.log(1 + math.exp(-2) + math.exp(-3)), math.log(math.exp(2) + 1 + math.exp(-1))]
    assert listwise_loss(logits, torch.tensor([0, 1])).item() == pytest.approx(sum(want) / 2, abs=1e-6)
    assert want[0] == pytest.approx(0.169846, abs=1e-6)


def test_candidates_are_the_dual_top_k_with_the_positive_exactly_once():
    sims = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.2],    # positive 2: ranked 2nd, kept in place
                         [0.9, 0.8, 0.7, 0.6, 0.0],    # positive 4: ranked last, replaces the k-th
                         [0.1, 0.2, 0.3, 0.4, 0.5]])   # positive 4: ranked first
    cands, target = listwise_candidates(sims, torch.tensor([2, 4, 4]), k=3)
    assert cands.tolist() == [[0, 2, 3], [0, 1, 4], [4, 3, 2]]
    assert target.tolist() == [1, 2, 0]
    g = torch.Generator().manual_seed(0)
    sims, pos = torch.randn(50, 30, generator=g), torch.randint(0, 30, (50,), generator=g)
    cands, target = listwise_candidates(sims, pos, k=7)
    assert ((cands == pos[:, None]).sum(1) == 1).all() and (cands[torch.arange(50), target] == pos).all()
    assert all(len(set(row)) == 7 for row in cands.tolist())  # k distinct videos
    with pytest.raises(ValueError, match="2 <= k <= N"):
        listwise_candidates(sims, pos, k=31)


def test_a_listwise_recipe_needs_the_gallery_and_names_its_k():
    recipe = MatchingRecipe("listwise", "gallery", n_sampled=9, n_random=0)
    assert recipe.tag.startswith("listwise10-gallery")
    with pytest.raises(ValueError, match="'listwise' takes the gallery pool"):
        MatchingRecipe("listwise", "batch", n_sampled=9, n_random=0)
    with pytest.raises(ValueError, match="no random negatives"):
        MatchingRecipe("listwise", "gallery", n_sampled=9, n_random=1)


def test_a_listwise_step_scores_k_candidates_per_caption_and_trains_the_head():
    """One gallery batch of 4 captions over 6 videos: the loss is the mean cross-entropy of each caption's
    3 candidates as the head scores them, and its gradient reaches every weight of the head's output."""
    torch.manual_seed(0)
    D, L, M, n_cap, n_vid = 8, 5, 6, 10, 6
    head = MatchingHead(D, heads=2, layers=1).eval()  # no dropout: the two computations must agree
    tt, tm = torch.randn(n_cap, L, D), torch.ones(n_cap, L, dtype=torch.bool)
    vt, vm = torch.randn(n_vid, M, D), torch.ones(n_vid, M, dtype=torch.bool)
    sims = torch.randn(n_cap, n_vid)
    c, v = torch.tensor([0, 3, 5, 9]), torch.tensor([1, 0, 4, 2])
    batch = ((tt, tm, vt, vm), sims, c, v, sims[c], v, sims[:, v].T, None)
    recipe = MatchingRecipe("listwise", "gallery", n_sampled=2, n_random=0)
    loss = _pair_loss(head, recipe, torch.Generator(), torch.device("cpu"))(batch)
    cands, target = listwise_candidates(sims[c], v, 3)
    by_hand = torch.stack([head(tt[c[i]].expand(3, L, D), tm[c[i]].expand(3, L), vt[cands[i]], vm[cands[i]])
                           for i in range(4)])
    torch.testing.assert_close(loss, listwise_loss(by_hand, target))
    loss.backward()
    grads = [p.grad for p in head.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
