"""Global alignment (paper sec. 3.5, eq. 4) and the similarity arithmetic of the dual encoder.

Vocabulary: N_t texts, N_v videos, E experts, D common width, K clusters.

Text side: per expert a Gated Embedding Unit on the K*D text VLAD vector gives F_e^text, and the
expert weights are w(t) = softmax(Linear(K*D -> E)(t)) (the port's choice of input).

s_global(t, v) = sum_e w_e a_e cos(F_e^text, F_e^video) / sum_e w_e a_e   (weights of missing experts
zeroed, the rest renormalised), s_local(t, v) = <t_vlad, v_vlad> = (1/K) sum_k cos(g_k^text, g_k^video).

Both are matrix products over embeddings computed once per side: that is what makes T2VLAD a dual
encoder (:func:`global_similarity`, :func:`local_similarity`).
"""

from __future__ import annotations

import torch
from torch import nn

from .video import GatedEmbeddingUnit

__all__ = ["GlobalTextHead", "global_similarity", "local_similarity", "pairwise_global_similarity"]


class GlobalTextHead(nn.Module):
    """Expert-specific global text features and expert weights from the text VLAD vector.

    Args:
        experts: expert names (order of E).
        in_dim: K*D, the width of the text VLAD vector.
        dim: D.
    """

    def __init__(self, experts: list[str], in_dim: int, dim: int):
        super().__init__()
        self.experts = list(experts)
        self.geu = nn.ModuleDict({e: GatedEmbeddingUnit(in_dim, dim) for e in self.experts})
        self.weights = nn.Linear(in_dim, len(self.experts))

    def forward(self, text_vlad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K*D) -> (B, E, D) unit-norm F^text, (B, E) expert weights summing to 1 (eq. 4's w)."""
        feats = torch.stack([self.geu[e](text_vlad) for e in self.experts], 1)
        return feats, torch.softmax(self.weights(text_vlad), dim=-1)


def local_similarity(text_vlad: torch.Tensor, video_vlad: torch.Tensor) -> torch.Tensor:
    """(N_t, K*D), (N_v, K*D) -> (N_t, N_v): the mean over K of per-center cosines."""
    return text_vlad @ video_vlad.T


def global_similarity(
    text_feats: torch.Tensor, weights: torch.Tensor, video_feats: torch.Tensor, available: torch.Tensor
) -> torch.Tensor:
    """Eq. (4) with masked renormalisation, for every text against every video, in two matmuls.

    Args:
        text_feats: (N_t, E, D) unit-norm F^text. weights: (N_t, E) softmax weights.
        video_feats: (N_v, E, D) unit-norm F^video. available: (N_v, E) bool.
    Returns:
        (N_t, N_v) similarities; sum_e w_e a_e cos_e / sum_e w_e a_e.
    """
    a = available.to(video_feats.dtype)
    numerator = (weights.unsqueeze(-1) * text_feats).flatten(1) @ (a.unsqueeze(-1) * video_feats).flatten(1).T
    denominator = weights @ a.T
    return numerator / denominator.clamp_min(torch.finfo(denominator.dtype).tiny)


def pairwise_global_similarity(
    text_feats: torch.Tensor, weights: torch.Tensor, video_feats: torch.Tensor, available: torch.Tensor
) -> torch.Tensor:
    """Eq. (4) for aligned pairs (row i of text with row i of video): (B, E, D) x2 -> (B,).

    The reference the matrix version is tested against, and the port's per-pair way of computing it.
    """
    w = weights * available.to(weights.dtype)
    cos = (text_feats * video_feats).sum(-1)  # (B, E)
    return (w * cos).sum(-1) / w.sum(-1).clamp_min(torch.finfo(w.dtype).tiny)
