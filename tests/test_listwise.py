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


def test_a_listwise_recipe_names_its_k_and_joint_training_takes_it_from_the_batch():
    recipe = MatchingRecipe("listwise", "gallery", n_sampled=9, n_random=0)
    assert recipe.tag.startswith("listwise10-gallery")
    with pytest.raises(ValueError, match="no random negatives"):
        MatchingRecipe("listwise", "gallery", n_sampled=9, n_random=1)
    joint = MatchingRecipe("listwise", "batch", n_sampled=4, n_random=0, joint=True, cross=True)
    assert joint.tag.startswith("listwise5-batch") and joint.tag.endswith("-cross-joint")
    with pytest.raises(ValueError, match="joint training takes listwise negatives from the batch"):
        MatchingRecipe("listwise", "gallery", n_sampled=4, n_random=0, joint=True)
    with pytest.raises(ValueError, match="tokens must be"):
        MatchingRecipe(tokens="raw")


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


def test_joint_training_reaches_the_head_and_the_dual_encoder(tmp_path, monkeypatch):
    """CLIP2TV's joint objective on the sample: the listwise term alone sends gradients into the head and into
    the dual encoder's video and text projections; a 1-epoch joint ``train_matching`` moves both and writes
    its summary beside the config's run."""
    import json

    from helpers import small_run

    from t2vlad_lib.core.checkpoint import load_checkpoint
    from t2vlad_lib.core.utils import seed_everything
    from t2vlad_lib.engine.config import load_config
    from t2vlad_lib.engine.pipeline import prepare
    from t2vlad_lib.engine.runs import build_model
    from t2vlad_lib.extensions.matching import joint_loss, train_matching
    from t2vlad_lib.model.losses import make_ranking_loss

    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))
    cfg = load_config("fast", small_run(tmp_path / "run", epochs=1))
    data = prepare(cfg, verbose=False)
    torch.manual_seed(0)
    dual = build_model(cfg, data)
    head = MatchingHead(dual.config.dim, heads=2, layers=1, residual=True)
    text, video = data.train_batch(torch.arange(8), torch.Generator().manual_seed(0))
    total, rank, match = joint_loss(dual, head, text, video, make_ranking_loss("max_margin", 0.2, 0.05), k=3)
    torch.testing.assert_close(total, rank + match)
    match.backward()
    named = dict(dual.named_parameters())
    for name in ("video_encoder.proj.appearance.weight", "text_proj.weight"):
        assert float(named[name].grad.abs().sum()) > 0, name
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in head.out.parameters())

    recipe = MatchingRecipe("listwise", "batch", n_sampled=2, n_random=0, epochs=1, layers=1, joint=True)
    res = train_matching(cfg, None, recipe, ks=(2, 4), curve_queries=10, data=data, timing_rounds=1)
    assert res.path == recipe.summary_path(cfg.run_dir()).with_suffix(".pt") and res.path.exists()
    summary = json.loads(res.path.with_suffix(".json").read_text())
    assert summary["recipe"]["joint"] and len(summary["curve"]) == 1
    seed_everything(cfg.seed)  # the untrained model joint training started from: joint training moved it
    fresh, ckpt = build_model(cfg, data), load_checkpoint(res.path)
    moved = [k for k, v in fresh.state_dict().items() if not torch.equal(v, ckpt["dual"][k].to(v.dtype))]
    assert any(k.startswith("video_encoder.") for k in moved)
    assert any(k.startswith("text_proj") for k in moved)


def test_keep_best_restores_the_epoch_whose_head_ranks_validation_best():
    """A toy 'head' whose one weight says whether it puts the true video first (> 0) or last: epochs with
    weights 1, -1, 0.5 give head-alone R@1 100, 0, 100; the first best epoch is kept and restored."""
    from types import SimpleNamespace

    from torch import nn

    from t2vlad_lib.extensions.matching import _LearningCurve

    module = nn.Linear(1, 1, bias=False)

    def scorer(q, g):
        return torch.where(g == q, module.weight.detach()[0, 0], torch.tensor(0.0))

    scorer.head = module
    sims = torch.rand(4, 4, generator=torch.Generator().manual_seed(0))
    curve = _LearningCurve(lambda: (scorer, sims), torch.ones(4, 1, dtype=torch.bool), None,
                           torch.Generator().manual_seed(0), False, keep=module)
    for epoch, w in enumerate([1.0, -1.0, 0.5]):
        with torch.no_grad():
            module.weight.fill_(w)
        curve.on_epoch_end(SimpleNamespace(epoch=epoch, epochs=3, row={"train_loss": 0.0}))
    assert [r["val_head_R1"] for r in curve.rows] == [100.0, 0.0, 100.0]
    curve.restore_best()
    assert module.weight.item() == 1.0 and [r.get("kept", False) for r in curve.rows] == [True, False, False]


def test_skip_leaves_out_the_lists_the_dual_encoder_missed():
    """missed="skip": the loss is the cross-entropy of the captions whose positive is in the dual top k."""
    from t2vlad_lib.extensions.matching import in_top_k

    sims = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.2], [0.9, 0.8, 0.7, 0.6, 0.0], [0.1, 0.2, 0.3, 0.4, 0.5]])
    assert in_top_k(sims, torch.tensor([2, 4, 4]), 3).tolist() == [True, False, True]
    torch.manual_seed(0)
    D, L, M = 8, 5, 6
    head = MatchingHead(D, heads=2, layers=1).eval()
    tt, tm = torch.randn(3, L, D), torch.ones(3, L, dtype=torch.bool)
    vt, vm = torch.randn(5, M, D), torch.ones(5, M, dtype=torch.bool)
    c, v = torch.arange(3), torch.tensor([2, 4, 4])
    batch = ((tt, tm, vt, vm), sims, c, v, sims[c], v, sims[:, v].T, None)
    skip = MatchingRecipe("listwise", "gallery", n_sampled=2, n_random=0, missed="skip")
    loss = _pair_loss(head, skip, torch.Generator(), torch.device("cpu"))(batch)
    cands, target = listwise_candidates(sims, v, 3)
    by_hand = torch.stack([head(tt[i].expand(3, L, D), tm[i].expand(3, L), vt[cands[i]], vm[cands[i]])
                           for i in (0, 2)])
    torch.testing.assert_close(loss, listwise_loss(by_hand, target[[0, 2]]))
