"""Similarity distillation: the KL loss by hand and against a naive loop, teacher loading, caption noise
swapping exactly the configured fraction, and a trainer run with distillation on noisy captions."""

import math

import pytest
import torch
from helpers import small_run

from t2vlad_lib.engine.pipeline import corrupt_captions
from t2vlad_lib.extensions.distill import similarity_distillation_loss


def test_hand_computed_2x2():
    # teacher uniform, student softmax((1, 0)): every row and column has KL = log(1 + e) - 1/2 - log 2
    student = torch.eye(2)
    got = similarity_distillation_loss(student, torch.zeros(2, 2), temperature=1.0)
    assert math.isclose(got.item(), math.log(1 + math.e) - 0.5 - math.log(2), rel_tol=1e-6)
    # tau = 0.5 doubles the logits: KL = log(1 + e^2) - 1 - log 2
    got = similarity_distillation_loss(student, torch.zeros(2, 2), temperature=0.5)
    assert math.isclose(got.item(), math.log(1 + math.e**2) - 1 - math.log(2), rel_tol=1e-6)


def test_matches_a_naive_loop_and_is_zero_on_agreement():
    g = torch.Generator().manual_seed(0)
    s, t = (
        torch.randn(4, 3, generator=g, dtype=torch.float64),
        torch.randn(4, 3, generator=g, dtype=torch.float64),
    )
    tau, tau_t = 0.3, 0.7

    def kl_rows(a, b):  # mean over rows of sum_j p_j log(p_j / q_j), p from b (teacher), q from a
        total = 0.0
        for i in range(a.shape[0]):
            p = [math.exp(x / tau_t) for x in b[i].tolist()]
            q = [math.exp(x / tau) for x in a[i].tolist()]
            p, q = [x / sum(p) for x in p], [x / sum(q) for x in q]
            total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
        return total / a.shape[0]

    ref = 0.5 * (kl_rows(s, t) + kl_rows(s.T, t.T))
    got = similarity_distillation_loss(s, t, tau, tau_t)
    assert math.isclose(got.item(), ref, rel_tol=1e-5)
    assert similarity_distillation_loss(t, t, 0.2).abs().item() < 1e-6
    s.requires_grad_(True)
    similarity_distillation_loss(s, t, tau, tau_t).backward()
    assert s.grad is not None and bool(s.grad.abs().sum() > 0)


def test_bad_input():
    with pytest.raises(ValueError, match="same"):
        similarity_distillation_loss(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="non-finite teacher"):
        similarity_distillation_loss(torch.zeros(2, 2), torch.tensor([[0.0, float("nan")], [0, 0]]))
    with pytest.raises(ValueError, match="temperatures"):
        similarity_distillation_loss(torch.zeros(2, 2), torch.zeros(2, 2), 0.0)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5])
def test_caption_noise_swaps_exactly_the_fraction_with_other_videos(fraction):
    caps = [[10 * v + j for j in range(1 + v % 3)] for v in range(40)]  # 1-3 captions per video
    n_slots = sum(len(c) for c in caps)
    new, swapped = corrupt_captions(caps, fraction, seed=3)
    changed = [(v, j) for v in range(40) for j in range(len(caps[v])) if new[v][j] != caps[v][j]]
    assert len(changed) == len(swapped) == round(fraction * n_slots)
    assert sorted(changed) == sorted(swapped)
    assert all(new[v][j] // 10 != v for v, j in changed)  # each now holds another video's caption
    assert sorted(c for cs in new for c in cs) == sorted(c for cs in caps for c in cs)  # same multiset
    assert corrupt_captions(caps, fraction, seed=3)[0] == new  # deterministic by seed
    if fraction:
        assert corrupt_captions(caps, fraction, seed=4)[0] != new
    with pytest.raises(ValueError, match="caption_noise"):
        corrupt_captions(caps, 1.0)


@pytest.mark.slow
def test_trainer_with_noise_and_a_distillation_teacher(tmp_path, monkeypatch):
    from t2vlad_lib.engine.config import load_config
    from t2vlad_lib.engine.pipeline import prepare
    from t2vlad_lib.engine.train import train

    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))
    base = {**small_run(epochs=1), "data.caption_noise": 0.25}
    cfg = load_config("fast", {**base, "out_dir": str(tmp_path / "teacher")})
    data = prepare(cfg, verbose=False)
    total = sum(len(c) for c in data.train.video_captions)
    clean = list(range(total))  # RetrievalDataset numbers captions video by video
    now = [c for cs in data.train.video_captions for c in cs]
    assert sum(a != b for a, b in zip(now, clean, strict=True)) == round(0.25 * total)
    teacher = train(cfg, progress=False, data=data)
    before = torch.load(teacher.run_dir / "best.pt", weights_only=False)["model"]
    over = {
        **base,
        "out_dir": str(tmp_path / "student"),
        "distill.weight": 1.0,
        "distill.teacher": str(teacher.run_dir / "best.pt"),
        "arch": "meanpool",
        "loss.name": "infonce",
    }
    student = train(load_config("fast", over), progress=False, data=data)
    loss = student.history[0]["train_loss"]
    assert loss == loss and loss > 0
    after = torch.load(teacher.run_dir / "best.pt", weights_only=False)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)  # the teacher stayed frozen
