"""Fused re-ranking: standardisation, w = 0 is the dual ranking, w = 1 the scorer's, a fused case by hand,
only the top k move for every w, and (k, w) chosen on the split it is given, with its tie rules."""

import math

import pytest
import torch

from t2vlad_lib.engine.evaluate import retrieval_metrics
from t2vlad_lib.extensions.rerank import (
    fuse,
    rerank,
    rerank_scored,
    select_rerank,
    standardise,
    top_candidates,
)


def test_standardise_rows():
    x = torch.tensor([[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]])
    z = standardise(x)
    torch.testing.assert_close(z[0].mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(z[0].pow(2).mean(), torch.tensor(1.0), atol=1e-4, rtol=0)  # ddof 0
    assert z[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # a constant row: no information, no NaN
    assert z[0].argsort().tolist() == [0, 1, 2, 3]  # monotone in each row
    # invariant to each row's affine rescaling: the reason unlike scales can be fused
    torch.testing.assert_close(standardise(3.0 * x[:1] - 7.0), z[:1], atol=1e-5, rtol=0)


def test_fused_score_by_hand():
    # dual (0.9, 0.8, 0.1): mean 0.6, std sqrt(0.26/3); match (0, 3, 0): mean 1, std sqrt(2)
    dual, match = torch.tensor([[0.9, 0.8, 0.1]]), torch.tensor([[0.0, 3.0, 0.0]])
    sd, sm = math.sqrt((0.09 + 0.04 + 0.25) / 3), math.sqrt(2.0)
    zd = [(0.9 - 0.6) / sd, (0.8 - 0.6) / sd, (0.1 - 0.6) / sd]
    zm = [-1 / sm, 2 / sm, -1 / sm]
    want = [0.5 * a + 0.5 * b for a, b in zip(zd, zm, strict=True)]
    torch.testing.assert_close(fuse(dual, match, 0.5)[0], torch.tensor(want), atol=1e-4, rtol=0)
    # w = 0.5 puts candidate 1 first (0.5 * 0.56 + 0.5 * 1.41 > 0.5 * 0.84 - 0.5 * 0.71), then 0, then 2
    scores, order = rerank(dual, lambda q, g: match[0, g], 3, weight=0.5)
    assert order.tolist() == [[1, 0, 2]]
    with pytest.raises(ValueError, match="weight"):
        fuse(dual, match, 1.5)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_weight_zero_is_the_dual_ranking(k):
    g = torch.Generator().manual_seed(k)
    dual = torch.randn(10, 10, generator=g)
    dual[0, 3] = dual[0, 5]  # a tie: the dual order breaks it by gallery index, so must the re-rank
    match = torch.randn(10, 10, generator=g) * 100  # a loud scorer that w = 0 must ignore
    scores, order = rerank(dual, lambda q, v: match[q, v], k, weight=0.0)
    dual_order = dual.argsort(dim=1, descending=True, stable=True)
    assert torch.equal(order, dual_order)  # same ranking, same order
    assert torch.equal(scores.argsort(dim=1, descending=True, stable=True), dual_order)  # scores encode it
    masks = torch.ones(10, 1, dtype=torch.bool)  # query i's true video is video i
    t2v = lambda m: {key: v for key, v in m.items() if key.startswith("t2v_")}  # noqa: E731  (rows only)
    assert t2v(retrieval_metrics(scores, masks)) == t2v(retrieval_metrics(dual, masks))


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.7, 1.0])
def test_only_the_top_k_move_for_every_weight(weight):
    g = torch.Generator().manual_seed(5)
    dual, match = torch.randn(6, 12, generator=g), torch.randn(6, 12, generator=g)
    k = 4
    scores, order = rerank(dual, lambda q, v: match[q, v], k, weight)
    dual_order = dual.argsort(dim=1, descending=True, stable=True)
    for i in range(6):
        assert set(order[i, :k].tolist()) == set(dual_order[i, :k].tolist())
        assert order[i, k:].tolist() == dual_order[i, k:].tolist()
        assert torch.equal(scores[i, dual_order[i, k:]], dual[i, dual_order[i, k:]])
        assert scores[i].argsort(descending=True).tolist() == order[i].tolist()
        top = dual_order[i, :k]
        fused = fuse(dual[i : i + 1, top], match[i : i + 1, top], weight)[0]
        assert order[i, :k].tolist() == [top[j].item() for j in fused.argsort(descending=True, stable=True)]
    if weight == 1.0:  # the scorer alone: the old "replace the dual score" inference
        for i in range(6):
            top = dual_order[i, :k].tolist()
            assert order[i, :k].tolist() == sorted(top, key=lambda j: -match[i, j].item())


def test_scores_of_the_largest_k_serve_every_smaller_k():
    g = torch.Generator().manual_seed(2)
    dual, match = torch.randn(5, 9, generator=g), torch.randn(5, 9, generator=g)
    calls = []

    def score_fn(q, v):
        calls.append(len(q))
        return match[q, v]

    order, logits = top_candidates(dual, score_fn, 6)
    assert calls == [5 * 6] and logits.shape == (5, 6)
    for k in (2, 4, 6):
        for w in (0.0, 0.5, 1.0):
            got = rerank_scored(dual, order, logits, k, w)
            want = rerank(dual, lambda q, v: match[q, v], k, w)
            assert torch.equal(got[1], want[1]) and torch.equal(got[0], want[0])
    with pytest.raises(ValueError, match="do not cover"):
        rerank_scored(dual, order, logits, 7, 0.5)


def _split(true_first: bool):
    """6 queries x 6 videos, query i's true video i, always at dual rank 2 (behind video (i + 1) % 6).
    The scorer is right (true video first) when ``true_first``, else it pushes the true video last."""
    dual = torch.zeros(6, 6)
    for i in range(6):
        dual[i, (i + 1) % 6], dual[i, i] = 0.9, 0.8
        dual[i, (i + 2) % 6] = 0.7
    match = torch.zeros(6, 6)
    for i in range(6):
        match[i, i] = 5.0 if true_first else -5.0
    masks = torch.ones(6, 1, dtype=torch.bool)
    order, logits = top_candidates(dual, lambda q, v: match[q, v], 3)
    return dual, order, logits, masks


def test_selection_is_the_best_point_of_the_split_it_is_given():
    # on "validation" the scorer is right: R@1 100 at (2, 1.0), (3, 0.4), (3, 1.0); at k = 2 both z-scores are
    # +-1, so w = 0.4 leaves the dual order (R@1 0). On "test" the scorer is wrong.
    val, test = _split(True), _split(False)
    choice = select_rerank(*val, ks=[3, 2], weights=[1.0, 0.0, 0.4])
    assert (choice.k, choice.weight, choice.r1) == (2, 1.0, 100.0)  # ties: the smaller k, then the smaller w
    assert [(p["k"], p["weight"], p["t2v_R1"]) for p in choice.grid] == [
        (2, 0.0, 0.0), (2, 0.4, 0.0), (2, 1.0, 100.0), (3, 0.0, 0.0), (3, 0.4, 100.0), (3, 1.0, 100.0)
    ]
    # the choice is a function of the validation inputs: whatever test says, it is the same
    assert select_rerank(*val, ks=[2, 3], weights=[0.0, 0.4, 1.0]).weight == choice.weight
    on_test = select_rerank(*test, ks=[2, 3], weights=[0.0, 0.4, 1.0])
    assert on_test.weight == 0.0 and on_test.r1 == 0.0  # a test-chosen w would differ: the split matters
    with pytest.raises(ValueError, match="empty grid"):
        select_rerank(*val, ks=[], weights=[0.5])
