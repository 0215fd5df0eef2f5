"""An MMT-style video encoder (Gabeur et al., ECCV 2020): the efficiency baseline of the paper's sec. 4.2.

Vocabulary: B videos, E experts, T_e segments of expert e, D_e its width, M = sum_e T_e, D common width.

Input sequence (length E + M), per expert e: one aggregated token followed by its T_e segment tokens,

    token = Linear_e(x) + expert_emb[e] + temporal_emb[t],   t = 0 for the aggregated token, 1.. T_e,

the aggregated token's feature being the max-pool over time of the expert's projected segments (as MMT
initialises it). A stack of pre-LN transformer layers (default 4 layers, 4 heads, FFN D) with a key-padding
mask over padded segments and missing experts; the outputs at the E aggregated positions, L2-normalised,
are the per-expert video embeddings (B, E, D). Deviations from MMT: temporal embeddings index segments,
not seconds; FFN width D (as T2VLAD's video layer, so the comparison is like for like) instead of 3072.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.batch import VideoBatch
from .video import validate_video_batch
from .vlad import masked_max

__all__ = ["MMTVideoEncoder", "MMTOutput"]


@dataclass
class MMTOutput:
    """embeddings: (B, E, D) unit-norm per-expert outputs (0 where missing); available: (B, E) bool."""

    embeddings: torch.Tensor
    available: torch.Tensor


class MMTVideoEncoder(nn.Module):
    """Multi-modal transformer over expert tokens.

    Args:
        expert_dims: expert name -> D_e (order = E).
        dim: D. heads: attention heads. layers: transformer layers (MMT: 4). dropout: 0.1.
        max_segments: largest T_e accepted (size of the temporal embedding table).
    """

    def __init__(self, expert_dims: dict[str, int], dim: int, heads: int = 4, layers: int = 4,
                 dropout: float = 0.1, max_segments: int = 128):
        super().__init__()
        if not expert_dims:
            raise ValueError("MMTVideoEncoder: need at least one expert")
        self.expert_dims, self.experts = dict(expert_dims), list(expert_dims)
        self.max_segments = max_segments
        self.proj = nn.ModuleDict({e: nn.Linear(d, dim) for e, d in expert_dims.items()})
        self.expert_emb = nn.Embedding(len(self.experts), dim)
        self.temporal_emb = nn.Embedding(max_segments + 1, dim)  # 0: the aggregated token
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim),
                                             enable_nested_tensor=False)

    def tokens(self, video: VideoBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embedded input sequence.

        Returns:
            (B, E + M, D) tokens, (B, E + M) bool mask (True = real), (E,) positions of the aggregated tokens.
        """
        toks, masks, agg_pos, pos = [], [], [], 0
        for i, e in enumerate(self.experts):
            x = video.features[e]  # (B, T_e, D_e)
            T = x.shape[1]
            if T > self.max_segments:
                raise ValueError(f"MMTVideoEncoder: expert '{e}' has {T} segments > "
                                 f"max_segments {self.max_segments}")
            present = video.token_mask[e].bool() & video.available[e].bool().unsqueeze(1)  # (B, T_e)
            feats = self.proj[e](x.masked_fill(~present.unsqueeze(-1), 0.0))  # (B, T_e, D)
            agg = masked_max(feats, present).unsqueeze(1)  # (B, 1, D) MMT's max-pooled initialisation
            seq = torch.cat([agg, feats], 1)  # (B, 1 + T_e, D)
            time = torch.arange(T + 1, device=x.device)
            seq = seq + self.temporal_emb(time) + self.expert_emb.weight[i]
            toks.append(seq)
            masks.append(torch.cat([present.any(1, keepdim=True), present], 1))  # (B, 1 + T_e)
            agg_pos.append(pos)
            pos += T + 1
        return torch.cat(toks, 1), torch.cat(masks, 1), torch.tensor(agg_pos, device=toks[0].device)

    def forward(self, video: VideoBatch, validate: bool = True) -> MMTOutput:
        """features[e] (B, T_e, D_e), token_mask[e] (B, T_e), available[e] (B,) -> :class:`MMTOutput`
        with embeddings (B, E, D) and available (B, E)."""
        if validate:
            validate_video_batch(video, self.expert_dims)
        x, mask, agg_pos = self.tokens(video)
        x = self.encoder(x, src_key_padding_mask=~mask)  # (B, E + M, D)
        avail = mask[:, agg_pos]  # (B, E): an expert with no real segment is unavailable
        out = F.normalize(x[:, agg_pos], dim=-1) * avail.unsqueeze(-1)
        return MMTOutput(out, avail)
