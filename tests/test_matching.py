"""CLIP2TV-style matching head: shapes, masks, hard-negative mining, negatives sampled in proportion to given
weights, BCE by hand, and a short train-select-rerank run on the shipped DigitClips sample (the re-ranking
itself: tests/test_rerank.py)."""

import json
import math

import pytest
import torch
from helpers import small_run

from t2vlad_lib.extensions.matching import (
    MatchingHead,
    MatchingRecipe,
    all_pair_logits,
    draw_negatives,
    matching_loss,
    mine_hard_negatives,
    pair_logits,
    sample_negatives,
)


def tokens(P=4, L=5, M=6, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    tmask = torch.ones(P, L, dtype=torch.bool)
    vmask = torch.ones(P, M, dtype=torch.bool)
    tmask[0, 3:] = False
    vmask[1, 2:] = False
    return torch.randn(P, L, D, generator=g), tmask, torch.randn(P, M, D, generator=g), vmask


def head(cross=False):
    torch.manual_seed(0)
    return MatchingHead(8, heads=2, layers=2, cross=cross).eval()


@pytest.mark.parametrize("cross", [False, True])
def test_head_shapes_and_masked_tokens_change_nothing(cross):
    h = head(cross)
    t, tm, v, vm = tokens()
    logits = h(t, tm, v, vm)
    assert logits.shape == (4,) and bool(torch.isfinite(logits).all())
    t2, v2 = t.clone(), v.clone()
    t2[0, 3:] = 100.0
    v2[1, 2:] = -100.0
    torch.testing.assert_close(h(t2, tm, v2, vm), logits)
    # trailing positions masked in every row (dropped before the transformer) change nothing either
    def pad(x, m):
        return torch.cat([x, torch.randn(4, 3, 8)], 1), torch.cat([m, m.new_zeros(4, 3)], 1)

    torch.testing.assert_close(h(*pad(t, tm), *pad(v, vm)), logits)
    # the score depends on the pairing (a cross-encoder, not a dot product of fixed vectors)
    assert not torch.allclose(h(t, tm, v.flip(0), vm.flip(0)), logits.flip(0))
    with pytest.raises(ValueError, match="MatchingHead"):
        h(t, tm, v[:3], vm[:3])


def test_cross_attention_lets_only_words_read_the_video():
    """In the cross-attention head the video tokens are keys and values: a text-free pair is impossible, and
    changing one real video token moves the logit (the words read it)."""
    h = head(cross=True)
    t, tm, v, vm = tokens()
    assert {n.split(".")[3] for n, _ in h.named_parameters() if n.startswith("encoder.layers.0.")} >= {
        "self_attn", "multihead_attn"}
    v2 = v.clone()
    v2[2, 0] = torch.randn(8)  # (a constant shift would not do: the head layer-normalises its input)
    moved = h(t, tm, v2, vm) != h(t, tm, v, vm)
    assert moved.tolist() == [False, False, True, False]


def test_label_head_embeds_multi_hot_labels():
    torch.manual_seed(0)
    h = MatchingHead(8, heads=2, layers=1, label_vocab=5).eval()
    t, tm, _, vm = tokens()
    labels = (torch.rand(4, 6, 5) > 0.5).float()
    assert h(t, tm, labels, vm).shape == (4,)
    assert h.video_in.in_features == 5 and h.config["label_vocab"] == 5


def test_label_tokens_are_each_tokens_true_labels(tmp_path, monkeypatch):
    """LabelTokens on the sample: each real token's multi-hot holds exactly its expert and the labels
    ``data.labels.token_labels`` gives it (checked for every token of two videos)."""
    from t2vlad_lib.data.digitclips import read_attributes
    from t2vlad_lib.data.labels import token_labels
    from t2vlad_lib.engine.config import load_config
    from t2vlad_lib.engine.pipeline import prepare
    from t2vlad_lib.engine.runs import build_model
    from t2vlad_lib.extensions.matching import token_sides

    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))
    cfg = load_config("fast", small_run(tmp_path / "run"))
    data = prepare(cfg, verbose=False)
    dual = build_model(cfg, data)
    _, labels = token_sides(dual, "labels", data)
    videos = data.test.videos.index(slice(0, 2))
    multi, mask = labels(videos)
    specs = read_attributes(data.root)["specs"]
    pos = 0
    for e in dual.video_encoder.experts:
        for t in range(videos.features[e].shape[1]):
            for b, vid in enumerate(videos.video_ids):
                want = {("expert", e)} | {(a, x) for a, v in token_labels(specs[vid], e)[t].items()
                                          for x in (v if isinstance(v, tuple) else (v,))}
                got = {labels.vocab[i] for i in multi[b, pos].nonzero().flatten().tolist()}
                assert got == {w for w in want if w in labels.index}, (vid, e, t)
            pos += 1
    assert pos == mask.shape[1] and {a for a, _ in labels.vocab} >= {"expert", "digit", "colour", "scene"}
    _, projected = token_sides(dual, "projected", data)
    assert projected(videos)[0].shape == (2, mask.shape[1], dual.config.dim)


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
    # a mask of positives (a video with several captions): every masked column is skipped
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[0, [0, 1]] = True
    mask[1, 2] = mask[2, 1] = True
    assert mine_hard_negatives(sims, mask, 1).flatten().tolist() == [3, 3, 3]


def test_matching_loss_by_hand():
    assert math.isclose(matching_loss(torch.zeros(2), torch.zeros(3)).item(), math.log(2), rel_tol=1e-6)
    # mean of -log sigmoid(2), -log sigmoid(-1) ... for labels 1 and 0: log(1+e^-2), log(1+e^-1)
    got = matching_loss(torch.tensor([2.0]), torch.tensor([-1.0])).item()
    assert math.isclose(got, (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2, rel_tol=1e-6)


def test_residual_head_adds_a_learned_multiple_of_the_dual_score():
    torch.manual_seed(0)
    h = MatchingHead(8, heads=2, layers=1, residual=True).eval()
    t, tm, v, vm = tokens()
    dual = torch.tensor([0.1, 0.5, -0.2, 0.9])
    with torch.no_grad():
        start = h(t, tm, v, vm, dual)
        h.dual_scale.fill_(0.0)
        base = h(t, tm, v, vm, dual)  # the transformer's logit alone
        assert torch.allclose(start, base + 20.0 * dual, atol=1e-5)  # the initial scale
        h.dual_scale.fill_(3.0)
        assert torch.allclose(h(t, tm, v, vm, dual), base + 3.0 * dual, atol=1e-6)
        ti, vi = torch.tensor([0, 2, 3]), torch.tensor([1, 2, 0])
        by_pairs = pair_logits(h, t, tm, v, vm, ti, vi, dual=dual[:3])
        direct = h(t[ti], tm[ti], v[vi], vm[vi], dual[:3])
        assert torch.allclose(by_pairs, direct, atol=1e-6)
    with pytest.raises(ValueError, match="dual="):
        h(t, tm, v, vm)


def test_negatives_are_drawn_in_proportion_to_the_given_similarities():
    """Row 0: weights 0, 1, 3 for the negatives (column 0 is the positive, weight 5, never drawn): 1/4 and
    3/4 of the draws. Row 1: the positive is column 2; columns 0 and 3 share the weight equally."""
    weights = torch.tensor([[5.0, 0.0, 1.0, 3.0], [2.0, 0.0, 9.0, 2.0]])
    positives = torch.tensor([0, 2])
    g = torch.Generator().manual_seed(0)
    n = 40_000
    # the n draws as one call on the rows repeated n times: each row of a call is drawn on its own
    draws = sample_negatives(weights.repeat(n, 1), positives.repeat(n), 1, g).view(n, 2)  # (n, 2)
    freq0 = torch.bincount(draws[:, 0], minlength=4).float() / n
    freq1 = torch.bincount(draws[:, 1], minlength=4).float() / n
    assert freq0[0] == 0 and freq0[1] == 0 and freq1[2] == 0 and freq1[1] == 0  # positives, zero weights
    tol = 4 * math.sqrt(0.25 * 0.75 / n)  # four binomial standard deviations
    assert abs(freq0[2] - 0.25) < tol and abs(freq0[3] - 0.75) < tol
    assert abs(freq1[0] - 0.5) < tol and abs(freq1[3] - 0.5) < tol
    two = sample_negatives(weights, positives, 2, g)  # without replacement: two distinct negatives
    assert sorted(two[0].tolist()) == [2, 3] and sorted(two[1].tolist()) == [0, 3]
    with pytest.raises(ValueError, match="fewer than n=3"):
        sample_negatives(weights, positives, 3, g)
    with pytest.raises(ValueError, match=">= 0"):
        sample_negatives(-weights, positives, 1, g)


def test_recipe_negatives_follow_the_softmax_of_the_dual_similarities():
    """'sampled': the first column ~ softmax(s / t) over the non-positives, the second uniform; 'hardest': the
    most similar non-positive, as mine_hard_negatives."""
    sims = torch.tensor([[0.9, 0.1, 0.5, 0.3]])
    recipe = MatchingRecipe("sampled", n_sampled=1, n_random=1, temperature=0.2)
    g = torch.Generator().manual_seed(1)
    n = 30_000
    draws = draw_negatives(sims.repeat(n, 1), torch.zeros(n, dtype=torch.long), recipe, g)  # (n, 2): n rows
    expect = torch.softmax(sims[0, 1:] / 0.2, 0)  # columns 1, 2, 3
    got = torch.bincount(draws[:, 0], minlength=4)[1:].float() / n
    assert torch.allclose(got, expect, atol=4 * math.sqrt(0.25 / n))
    uniform = torch.bincount(draws[:, 1], minlength=4)[1:].float() / n
    assert torch.allclose(uniform, torch.full((3,), 1 / 3), atol=4 * math.sqrt(0.25 / n))
    hardest = draw_negatives(sims, torch.tensor([0]), MatchingRecipe("hardest", n_sampled=1, n_random=0))
    assert hardest.tolist() == [[2]]
    with pytest.raises(ValueError, match="'sampled' or 'hardest'"):
        MatchingRecipe("softest")
    assert MatchingRecipe().tag != MatchingRecipe(epochs=3).tag  # every field names its files


@pytest.mark.slow
def test_train_matching_on_the_sample(tmp_path, monkeypatch, sample_run):
    import shutil

    from t2vlad_lib.engine.config import load_config
    from t2vlad_lib.engine.pipeline import prepare
    from t2vlad_lib.extensions.distill import load_teacher
    from t2vlad_lib.extensions.matching import rerank_test_ranks, train_matching

    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))
    shutil.copytree(sample_run[1].run_dir, tmp_path / "dual")  # the dual encoder: the session's 1-epoch run
    cfg = load_config("fast", small_run(tmp_path / "dual", epochs=1))
    data = prepare(cfg, verbose=False)
    recipe = MatchingRecipe(epochs=1, layers=1)
    res = train_matching(cfg, tmp_path / "dual" / "best.pt", recipe, ks=(2, 4), curve_queries=20, data=data,
                         timing_rounds=1)
    assert res.path.exists() and res.path.with_suffix(".json").exists() and len(res.losses) == 1
    assert res.r1_gain == pytest.approx(res.reranked["t2v_R1"] - res.dual["t2v_R1"])
    for key in ("t2v_R5", "t2v_R10"):  # R@K for K >= k cannot change: the top-k set is the same
        assert res.dual[key] == res.reranked[key]
    assert res.rerank_seconds_per_query > 0 and set(res.rerank_seconds_by_k) == {"2", "4"}
    assert res.k in (2, 4) and 0.0 <= res.weight <= 1.0 and set(res.per_k) == {"2", "4"}
    assert res.per_k[str(res.k)]["weight"] == res.weight  # the overall choice is one of the per-k choices
    assert res.per_k[str(res.k)]["test_t2v_R1"] == res.reranked["t2v_R1"]
    summary = json.loads(res.path.with_suffix(".json").read_text())
    assert len(summary["validation_grid"]) == 2 * 11 and summary["curve"][0]["epoch"] == 1
    # the saved head and dual encoder give back the per-query ranks the summary kept
    assert rerank_test_ranks(res.path, data) == res.test_ranks == summary["test_ranks"]
    ranks = res.test_ranks["reranked"]
    assert 100 * sum(r == 0 for r in ranks) / len(ranks) == pytest.approx(res.reranked["t2v_R1"])
    teacher = load_teacher(res.path, data)  # the matching head as a distillation teacher
    text, video = data.train_batch(torch.arange(5), torch.Generator().manual_seed(0))
    assert teacher.kind == "matching" and teacher(text, video).shape == (5, 5)
