"""CLIP2TV-style matching head: shapes, masks, hard-negative mining, BCE by hand, the re-ranker only permutes
the top-k, and a short train-then-rerank run on the shipped DigitClips sample."""

import math

import pytest
import torch
from helpers import small_run

from t2vlad_lib.matching import (
    MatchingHead,
    all_pair_logits,
    matching_loss,
    mine_hard_negatives,
    pair_logits,
    rerank,
)


def tokens(P=4, L=5, M=6, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    tmask = torch.ones(P, L, dtype=torch.bool)
    vmask = torch.ones(P, M, dtype=torch.bool)
    tmask[0, 3:] = False
    vmask[1, 2:] = False
    return torch.randn(P, L, D, generator=g), tmask, torch.randn(P, M, D, generator=g), vmask


def head():
    torch.manual_seed(0)
    return MatchingHead(8, heads=2, layers=2).eval()


def test_head_shapes_and_masked_tokens_change_nothing():
    h = head()
    t, tm, v, vm = tokens()
    logits = h(t, tm, v, vm)
    assert logits.shape == (4,) and bool(torch.isfinite(logits).all())
    t2, v2 = t.clone(), v.clone()
    t2[0, 3:] = 100.0
    v2[1, 2:] = -100.0
    torch.testing.assert_close(h(t2, tm, v2, vm), logits)
    # the score depends on the pairing (a cross-encoder, not a dot product of fixed vectors)
    assert not torch.allclose(h(t, tm, v.flip(0), vm.flip(0)), logits.flip(0))
    with pytest.raises(ValueError, match="MatchingHead"):
        h(t, tm, v[:3], vm[:3])


def test_pair_and_all_pair_logits_agree_with_direct_calls():
    h = head()
    t, tm, v, vm = tokens(P=3)
    full = all_pair_logits(h, t, tm, v, vm)
    assert full.shape == (3, 3)
    for i in range(3):
        for j in range(3):
            direct = h(t[i : i + 1], tm[i : i + 1], v[j : j + 1], vm[j : j + 1])[0]
            assert torch.allclose(full[i, j], direct, atol=1e-5)
    ti, vi = torch.tensor([2, 0]), torch.tensor([1, 1])
    torch.testing.assert_close(pair_logits(h, t, tm, v, vm, ti, vi, chunk=1), full[ti, vi])


def test_hard_negatives_are_the_most_similar_non_positives():
    sims = torch.tensor([[0.9, 0.8, 0.1, 0.5], [0.2, 0.3, 0.95, 0.4], [0.6, 0.7, 0.5, 0.65]])
    pos = torch.tensor([0, 1, 2])
    assert mine_hard_negatives(sims, pos, 1).flatten().tolist() == [1, 2, 1]
    assert mine_hard_negatives(sims, pos, 2).tolist() == [[1, 3], [2, 3], [1, 3]]
    g = torch.Generator().manual_seed(3)
    big, p = torch.randn(7, 9, generator=g), torch.randint(9, (7,), generator=g)
    got = mine_hard_negatives(big, p, 3)
    for i in range(7):  # reference: sort the non-positive columns by similarity
        ref = sorted((j for j in range(9) if j != p[i]), key=lambda j: -big[i, j].item())[:3]
        assert got[i].tolist() == ref
    with pytest.raises(ValueError, match="mine_hard_negatives"):
        mine_hard_negatives(sims, pos, 4)


def test_matching_loss_by_hand():
    assert math.isclose(matching_loss(torch.zeros(2), torch.zeros(3)).item(), math.log(2), rel_tol=1e-6)
    # mean of -log sigmoid(2), -log sigmoid(-1) ... for labels 1 and 0: log(1+e^-2), log(1+e^-1)
    got = matching_loss(torch.tensor([2.0]), torch.tensor([-1.0])).item()
    assert math.isclose(got, (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2, rel_tol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 5, 12])
def test_rerank_only_permutes_the_top_k(k):
    g = torch.Generator().manual_seed(k)
    dual = torch.randn(6, 10, generator=g)
    match = torch.randn(6, 10, generator=g)
    calls = []

    def score_fn(q, v):
        calls.append(len(q))
        return match[q, v]

    scores, order = rerank(dual, score_fn, k)
    kk = min(k, 10)
    assert calls == [6 * kk]  # the head sees exactly the top-k of each query
    dual_order = dual.argsort(1, descending=True)
    for i in range(6):
        top = dual_order[i, :kk]
        assert set(order[i, :kk].tolist()) == set(top.tolist())  # same items in the top-k
        assert order[i, kk:].tolist() == dual_order[i, kk:].tolist()  # the rest keep their order
        assert order[i, :kk].tolist() == sorted(top.tolist(), key=lambda j: -match[i, j].item())
        assert scores[i].argsort(descending=True).tolist() == order[i].tolist()  # scores encode the order
        rest = dual_order[i, kk:]
        assert torch.equal(scores[i, rest], dual[i, rest])  # untouched scores beyond k


def test_rerank_ties_keep_the_dual_order():
    dual = torch.tensor([[0.1, 0.9, 0.5, 0.7]])
    scores, order = rerank(dual, lambda q, v: torch.zeros(len(q)), 3)
    assert order.tolist() == [[1, 3, 2, 0]]


@pytest.mark.slow
def test_train_matching_on_the_sample(tmp_path, monkeypatch):
    from t2vlad_lib.config import load_config
    from t2vlad_lib.distill import load_teacher
    from t2vlad_lib.matching import train_matching
    from t2vlad_lib.pipeline import prepare
    from t2vlad_lib.train import train

    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))
    cfg = load_config("fast", small_run(tmp_path / "dual", epochs=1))
    data = prepare(cfg, verbose=False)
    train(cfg, progress=False, data=data)
    res = train_matching(cfg, tmp_path / "dual" / "best.pt", epochs=1, k=4, data=data)
    assert res.path.exists() and res.path.with_suffix(".json").exists() and len(res.losses) == 1
    assert res.r1_gain == pytest.approx(res.reranked["t2v_R1"] - res.dual["t2v_R1"])
    for key in ("t2v_R5", "t2v_R10"):  # R@K for K >= k cannot change: the top-k set is the same
        assert res.dual[key] == res.reranked[key]
    assert res.rerank_seconds_per_query > 0
    teacher = load_teacher(res.path, data)  # the matching head as a distillation teacher
    text, video = data.train_batch(torch.arange(5), torch.Generator().manual_seed(0))
    assert teacher.kind == "matching" and teacher(text, video).shape == (5, 5)
