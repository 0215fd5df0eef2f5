"""Similarity distillation (CLIP2TV, Gao et al. 2021, arXiv 2111.05610, "similarity distillation"): soft
targets for the dual encoder's in-batch ranking from a teacher's similarity distribution.

Vocabulary: B_t texts and B_v videos of a batch (B_t = B_v = B in training), S the student's (B_t, B_v)
similarities, T the teacher's.

A noisy caption (a vague or wrong description) makes its true video a bad one-hot target and other videos
false negatives; a teacher that has seen the whole data set spreads its probability over what really
matches. With p = softmax(T / tau_t) and q = softmax(S / tau) over each row (text -> videos) and each column
(video -> texts):

    L_distill = 1/2 [ (1/B_t) sum_i KL(p_i. || q_i.) + (1/B_v) sum_j KL(p_.j || q_.j) ]

added to the ranking loss as ``weight * L_distill`` (``distill`` config section; weight 0 = off).
Deviations from CLIP2TV: the teacher is a separately trained frozen model (a dual-encoder checkpoint, or the
matching head of ``matching.py``), not trained jointly; no tau^2 factor (Hinton et al.) - fold it in
``weight``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.batch import TextBatch, VideoBatch
from ..core.checkpoint import CheckpointError, load_checkpoint
from ..engine.config import from_dict
from ..engine.runs import build_model, load_weights, recorded_data
from ..engine.train import register_loss_terms
from .matching import all_pair_logits, load_matching, text_side, video_side

__all__ = [
    "similarity_distillation_loss", "SimilarityTeacher", "DistillationTerm", "load_teacher", "config_terms",
]


def _check(student: Tensor, teacher: Tensor) -> None:
    if student.ndim != 2 or student.shape != teacher.shape:
        raise ValueError(
            f"distillation: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} "
            "must be the same (B_t, B_v) similarity matrix"
        )
    for name, x in (("student", student), ("teacher", teacher)):
        if not bool(torch.isfinite(x).all()):
            i, j = (~torch.isfinite(x)).nonzero()[0].tolist()
            raise ValueError(f"distillation: non-finite {name} similarity at [{i}, {j}]")


def similarity_distillation_loss(
    student: Tensor, teacher: Tensor, temperature: float = 0.05, teacher_temperature: float | None = None
) -> Tensor:
    """KL(teacher || student) of the row and column softmax distributions, averaged (module docstring).

    Args:
        student: (B_t, B_v) student similarities S (gradients flow here).
        teacher: (B_t, B_v) teacher similarities or logits T (detached).
        temperature: tau of the student. teacher_temperature: tau_t (None = tau; 1.0 for logits).
    Returns:
        scalar tensor, >= 0, 0 iff the distributions agree.
    """
    _check(student, teacher)
    tau = float(temperature)
    tau_t = tau if teacher_temperature is None else float(teacher_temperature)
    if not (tau > 0 and tau_t > 0):
        raise ValueError(f"distillation: temperatures must be > 0, got {tau}, {tau_t}")
    s, t = student.float() / tau, teacher.detach().float() / tau_t
    rows = F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), reduction="batchmean", log_target=True)
    cols = F.kl_div(F.log_softmax(s.T, 1), F.log_softmax(t.T, 1), reduction="batchmean", log_target=True)
    return 0.5 * (rows + cols)


class SimilarityTeacher(nn.Module):
    """A frozen teacher giving (B_t, B_v) targets for a batch.

    ``kind == "dual"``: a trained dual encoder, T = model(text, video) (compared at the student's tau).
    ``kind == "matching"``: the cross-encoder of ``matching.py`` over all B_t * B_v pairs, T = match logits
    (``temperature`` 1: they are already logits).
    """

    def __init__(self, dual: nn.Module, head: nn.Module | None = None):
        super().__init__()
        self.dual, self.head = dual.eval().requires_grad_(False), head
        if head is not None:
            head.eval().requires_grad_(False)
        self.kind = "dual" if head is None else "matching"
        self.temperature: float | None = None if head is None else 1.0

    def train(self, mode: bool = True) -> SimilarityTeacher:
        return super().train(False)  # always frozen, BatchNorm statistics and dropout included

    @torch.no_grad()
    def forward(self, text: TextBatch, video: VideoBatch) -> Tensor:
        """(B_t, L) captions x (B_v) videos -> (B_t, B_v) teacher similarities or logits."""
        if self.head is None:
            return self.dual(text, video)
        dual = self.dual(text, video) if getattr(self.head, "residual", False) else None
        tokens = (*text_side(self.dual, text), *video_side(self.dual, video))
        return all_pair_logits(self.head, *tokens, dual=dual)


def load_teacher(path: str | Path, data, device: torch.device | str = "cpu") -> SimilarityTeacher:
    """A :class:`SimilarityTeacher` from a trainer checkpoint (``best.pt``) or a ``matching.pt``.

    ``data`` is the student's ``Prepared``: the teacher must have been trained on the same data (when its
    checkpoint records it) and accept its batches (same experts, same text states width); a mismatch, or a
    matching head that is not one of ``matching.MatchingHead``, raises ``checkpoint.CheckpointError``
    naming the checkpoint.
    """
    ckpt = load_checkpoint(path, map_location=device)
    trained_on, here = recorded_data(ckpt, path), data.identity() if data is not None else None
    if trained_on is not None and here is not None and trained_on not in (here["id"], here["dir"]):
        raise CheckpointError(f"distillation teacher {path} was trained on {trained_on!r}, the student "
                              f"trains on {here['id']!r}: train the teacher on the student's data")
    matching = ckpt.get("kind") == "matching"
    tokens = ckpt.get("recipe", {}).get("tokens", "contextual") if matching else "contextual"
    if tokens != "contextual":
        raise CheckpointError(f"distillation teacher {path}: its head reads the {tokens!r} video tokens; a "
                              "teacher's head must read the dual encoder's contextual tokens")
    try:
        if matching:
            dual, head = load_matching(ckpt, path, data)
        else:
            cfg, head = from_dict(ckpt["config"]), None
            dual = build_model(cfg, data)  # a fine-tuned text encoder: the teacher gets its own copy
            load_weights(dual, ckpt["model"], path, cfg)
    except (KeyError, TypeError, RuntimeError) as err:  # a head or payload of another kind than ours
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise CheckpointError(f"distillation teacher {path} is not a teacher this version can load "
                              f"({type(err).__name__}: {first}); expected a trainer best.pt or a matching.pt "
                              "written by matching.train_matching") from None
    return SimilarityTeacher(dual, head).to(device)


class DistillationTerm:
    """The trainer's extra loss term ``weight * similarity_distillation_loss(S, teacher(text, video))``."""

    def __init__(self, teacher: SimilarityTeacher, weight: float, temperature: float):
        self.teacher, self.weight, self.temperature = teacher, weight, temperature

    def __call__(self, sims: Tensor, text: TextBatch, video: VideoBatch) -> Tensor:
        """sims (B_t, B_v) of the student for this batch -> scalar."""
        target = self.teacher(text, video)
        loss = similarity_distillation_loss(sims, target, self.temperature, self.teacher.temperature)
        return self.weight * loss


def config_terms(cfg, data, device: torch.device | str = "cpu") -> list[DistillationTerm]:
    """The extra loss terms a config asks for: distillation when ``cfg.distill.weight > 0``, else none."""
    if cfg.distill.weight <= 0:
        return []
    teacher = load_teacher(cfg.distill.teacher, data, device)
    return [DistillationTerm(teacher, cfg.distill.weight, cfg.distill.temperature)]


register_loss_terms("distill", config_terms)  # the trainer adds them when distill.weight > 0
