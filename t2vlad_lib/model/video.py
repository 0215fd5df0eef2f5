"""Multi-expert video encoder (paper sec. 3.2): local tokens for T2VLAD, global features per expert.

Vocabulary: B videos, E experts, T_e segments of expert e, D_e its feature width, M = sum_e T_e video
tokens, D the common width.

Local branch: per expert ``Linear(D_e -> D)`` and L2 per token (the port's; not in the paper), concatenation
over experts to (B, M, D), one pre-LN transformer encoder layer (4 heads, FFN width D, final LayerNorm)
with a key-padding mask. The port passes no mask; we exclude padded and missing tokens (documented
deviation). ``token_norm=False`` skips the L2; ``layers=0`` skips the self-attention (and its LayerNorm).

Global branch: per expert, masked temporal max-pool of the raw features, then a Gated Embedding Unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.batch import VideoBatch
from .vlad import masked_max

__all__ = ["GatedEmbeddingUnit", "VideoEncoder", "VideoTokens", "validate_video_batch"]


class GatedEmbeddingUnit(nn.Module):
    """GEU(x) = normalize(y * sigmoid(BN(W2 y + b2))), y = W1 x + b1 (Miech et al.; CE's "context gating").

    Args:
        in_dim: input width (D_e for video experts, K*D for the text VLAD vector).
        out_dim: D.
    Shapes:
        (B, in_dim) -> (B, out_dim), unit L2 norm.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.gate = nn.Linear(out_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return F.normalize(y * torch.sigmoid(self.bn(self.gate(y))), dim=-1)


@dataclass
class VideoTokens:
    """What the video encoder gives T2VLAD and the global alignment.

    tokens: (B, M, D) contextual local tokens; token_mask: (B, M) bool;
    global_feats: (B, E, D) unit-norm global expert features (a missing expert still gets one, the GEU of
    zeros; ``available`` keeps it out of every similarity); available: (B, E) bool;
    expert_of_token: (M,) long, the expert index of each token position (for plots).
    """

    tokens: torch.Tensor
    token_mask: torch.Tensor
    global_feats: torch.Tensor
    available: torch.Tensor
    expert_of_token: torch.Tensor


def validate_video_batch(video: VideoBatch, expert_dims: dict[str, int]) -> None:
    """Raise ValueError naming the expert and video when a batch does not fit the model."""
    missing = [e for e in expert_dims if e not in video.features]
    if missing:
        raise ValueError(f"video batch lacks experts {missing}; the model expects {list(expert_dims)}")
    for name, dim in expert_dims.items():
        x, mask = video.features[name], video.token_mask[name]
        if x.dim() != 3 or x.shape[-1] != dim:
            raise ValueError(f"expert '{name}': expected features (B, T, {dim}), got {tuple(x.shape)}")
        if mask.shape != x.shape[:2]:
            raise ValueError(
                f"expert '{name}': token mask {tuple(mask.shape)} != features {tuple(x.shape[:2])}"
            )
        bad = ~torch.isfinite(x).all(dim=-1) & mask.bool()
        if bad.any():
            row = int(bad.any(dim=1).nonzero()[0])
            vid = video.video_ids[row] if video.video_ids else f"row {row}"
            raise ValueError(f"expert '{name}': NaN or inf inside a present token of video {vid}")
    any_token = torch.stack([video.token_mask[e].bool().any(1) for e in expert_dims], 1).any(1)
    if not any_token.all():
        row = int((~any_token).nonzero()[0])
        vid = video.video_ids[row] if video.video_ids else f"row {row}"
        raise ValueError(f"video {vid} has no token in any expert: nothing to encode")


class VideoEncoder(nn.Module):
    """Experts -> (local tokens, global expert features).

    Args:
        expert_dims: expert name -> D_e, in a fixed order (the order of E).
        dim: D.
        heads: attention heads (4 in the paper).
        dropout: 0.1 in the paper.
        layers: self-attention layers (1 in the paper; the MMT-style baseline uses more; 0: none).
        token_norm: L2-normalise each projected token (the port; not in the paper).
    """

    def __init__(
        self,
        expert_dims: dict[str, int],
        dim: int,
        heads: int = 4,
        dropout: float = 0.1,
        layers: int = 1,
        token_norm: bool = True,
    ):
        super().__init__()
        if not expert_dims:
            raise ValueError("VideoEncoder: need at least one expert")
        self.expert_dims = dict(expert_dims)
        self.experts = list(expert_dims)
        self.proj = nn.ModuleDict({e: nn.Linear(d, dim) for e, d in expert_dims.items()})
        self.token_norm = token_norm
        self.attention: nn.Module | None = None
        if layers > 0:
            layer = nn.TransformerEncoderLayer(
                dim, heads, dim_feedforward=dim, dropout=dropout, batch_first=True, norm_first=True
            )
            self.attention = nn.TransformerEncoder(
                layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False
            )
        self.geu = nn.ModuleDict({e: GatedEmbeddingUnit(d, dim) for e, d in expert_dims.items()})

    def local_tokens(self, video: VideoBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Projected, L2-normalised, concatenated expert tokens before self-attention.

        Returns:
            (B, M, D) tokens (0 where masked), (B, M) bool mask, (M,) expert index per position.
        """
        toks, masks, owner = [], [], []
        for i, e in enumerate(self.experts):
            mask = video.token_mask[e].bool() & video.available[e].bool().unsqueeze(1)
            x = video.features[e].masked_fill(~mask.unsqueeze(-1), 0.0)
            y = self.proj[e](x)
            toks.append((F.normalize(y, dim=-1) if self.token_norm else y) * mask.unsqueeze(-1))
            masks.append(mask)
            owner.append(torch.full((mask.shape[1],), i, dtype=torch.long, device=mask.device))
        return torch.cat(toks, 1), torch.cat(masks, 1), torch.cat(owner)

    def forward(self, video: VideoBatch, validate: bool = True) -> VideoTokens:
        """Encode a padded batch.

        Args:
            video: features[e] (B, T_e, D_e), token_mask[e] (B, T_e), available[e] (B,).
            validate: check dims and finiteness first (cheap; off in benchmarks).
        Returns:
            :class:`VideoTokens` with tokens (B, M, D), token_mask (B, M), global_feats (B, E, D),
            available (B, E).
        """
        if validate:
            validate_video_batch(video, self.expert_dims)
        tokens, mask, owner = self.local_tokens(video)
        if self.attention is not None:
            tokens = self.attention(tokens, src_key_padding_mask=~mask) * mask.unsqueeze(-1)
        glob, avail = [], []
        for e in self.experts:
            present = video.token_mask[e].bool() & video.available[e].bool().unsqueeze(1)
            pooled = masked_max(
                video.features[e].masked_fill(~present.unsqueeze(-1), 0.0), present
            )  # (B, D_e)
            glob.append(self.geu[e](pooled))
            avail.append(present.any(1))
        return VideoTokens(tokens, mask, torch.stack(glob, 1), torch.stack(avail, 1), owner)
