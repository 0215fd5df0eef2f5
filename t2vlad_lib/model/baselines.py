"""The paper's baselines as dual encoders with T2VLAD's interface, trained by the same trainer.

Vocabulary: B batch, L text tokens, H text-encoder width, E experts, T_e segments of expert e, M video
tokens, D common width; N_t / N_v texts / videos of a gallery.

* ``arch: mmt`` - :class:`MMTStyle` (Gabeur et al., ECCV 2020; the paper's Tables 1-3 and sec. 4.2):
  the multi-layer transformer over expert tokens of :mod:`t2vlad_lib.model.mmt` gives per-expert video
  embeddings (N_v, E, D); the text [CLS] token gives per-expert text embeddings (GEUs) and expert weights
  (softmax), compared by eq. (4) (:func:`global_similarity`, missing experts renormalised away).
* ``arch: ce`` - the CE-style global-only model (Liu et al., BMVC 2019): T2VLAD with ``terms="global",
  text_global_from="cls"`` (GEUs on max-pooled experts, mixture-of-experts weights). No new code: a
  preset in :data:`ARCH_PRESETS`, applied by ``train.build_model``.
* ``arch: meanpool`` - :class:`MeanPool` (CLIP4Clip's "meanP", Luo et al. 2021): projected tokens of all
  experts mean-pooled to one unit vector, text tokens mean-pooled likewise, cosine similarity; trained
  with a symmetric InfoNCE loss (``loss.name: infonce``).

Embeddings reuse :class:`TextEmbeddings` / :class:`VideoEmbeddings` so ``evaluate``, ``index`` and the
trainer work unchanged: the unused term is a zero-width tensor, and ``terms()`` names the term in use
((False, True) for MMT: all global; (True, False) for mean pooling: one inner product of ``local``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..core.batch import TextBatch, VideoBatch
from .alignment import GlobalTextHead, global_similarity, local_similarity
from .mmt import MMTVideoEncoder
from .t2vlad import T2VLAD, TERMS, TextEmbeddings, VideoEmbeddings, text_states
from .video import validate_video_batch

__all__ = ["ARCHES", "ARCH_PRESETS", "ARCH_KEYS", "BaselineConfig", "MMTStyle", "MeanPool", "text_states"]

ARCHES: tuple[str, ...] = ("t2vlad", "ce", "mmt", "meanpool")
# model keys fixed by a T2VLAD preset (the CE-style model is T2VLAD without local alignment, Table 4)
ARCH_PRESETS: dict[str, dict] = {"ce": {"terms": "global", "text_global_from": "cls"}}
# model keys each baseline reads; the T2VLAD-only keys of a profile (num_clusters, vlad, ...) are
# accepted and unused, so ``load_config("tutorial", ["arch=mmt"])`` works.
ARCH_KEYS: dict[str, tuple[str, ...]] = {
    "mmt": ("dim", "heads", "dropout", "attention_layers", "text_proj"),
    "meanpool": ("dim", "text_proj"),
}


@dataclass
class BaselineConfig:
    """expert_dims: expert -> D_e (order = E); text_dim: H; dim: D; heads / dropout / attention_layers:
    the MMT transformer (MMT: 4 layers, 4 heads, 0.1; ``attention_layers`` is 4 unless a profile sets it);
    text_proj: Linear(H -> D) on the text tokens (required when H != D)."""

    expert_dims: dict[str, int] = field(default_factory=dict)
    text_dim: int = 768
    dim: int = 768
    heads: int = 4
    dropout: float = 0.1
    attention_layers: int = 4
    text_proj: bool = True

    def __post_init__(self) -> None:
        if not self.expert_dims:
            raise ValueError("BaselineConfig: expert_dims is empty; give expert name -> feature width")
        if not self.text_proj and self.text_dim != self.dim:
            raise ValueError(
                f"BaselineConfig: text_proj=False needs text_dim == dim, got {self.text_dim} != {self.dim}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


class _DualBase(nn.Module):
    """What the baselines share with :class:`T2VLAD`: text encoder, text projection, cat helpers."""

    cat_text = staticmethod(T2VLAD.cat_text)
    cat_video = staticmethod(T2VLAD.cat_video)
    TERMS: tuple[bool, bool] = (True, True)

    def __init__(self, config: BaselineConfig, text_encoder: nn.Module | None = None):
        super().__init__()
        c = self.config = config
        if text_encoder is not None and getattr(text_encoder, "hidden_size", c.text_dim) != c.text_dim:
            raise ValueError(f"text encoder width {text_encoder.hidden_size} != config.text_dim {c.text_dim}")
        self.text_encoder = text_encoder
        self.text_proj = nn.Linear(c.text_dim, c.dim) if c.text_proj else nn.Identity()

    @property
    def experts(self) -> list[str]:
        return list(self.config.expert_dims)

    def text_tokens(self, text: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) captions -> projected tokens (B, L, D) and the (B, L) bool mask."""
        states, mask = text_states(text, self.text_encoder, self.config.text_dim)
        return self.text_proj(states.to(self.text_dtype)), mask

    @property
    def text_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def terms(self) -> tuple[bool, bool]:
        """(local, global) term in use; fixed per architecture (no train/eval switch)."""
        return self.TERMS

    def _check_terms(self, terms: str | None) -> None:
        """``similarity(..., terms=...)`` may only name the one term a baseline has."""
        if terms is not None and TERMS.get(terms) != self.TERMS:
            raise ValueError(f"{type(self).__name__} has one similarity term, {self.TERMS} (local, global); "
                             f"got terms={terms!r}")

    def forward(self, text: TextBatch, video: VideoBatch) -> torch.Tensor:
        """(B_t, L) captions x (B_v, ...) videos -> (B_t, B_v) similarity matrix."""
        return self.similarity(self.encode_text(text), self.encode_video(video))


class MMTStyle(_DualBase):
    """MMT-style dual encoder: :class:`MMTVideoEncoder` + text [CLS] -> GEUs and expert weights.

    Deviation from MMT: the text side is the (frozen or fine-tuned) token states' [CLS] through a
    Linear(H -> D) and one GEU per expert, as T2VLAD's "cls" global head (MMT uses BERT's [CLS] with
    per-expert gated units too, no extra text transformer); no HowTo100M pre-training.
    """

    TERMS = (False, True)

    def __init__(self, config: BaselineConfig, text_encoder: nn.Module | None = None):
        super().__init__(config, text_encoder)
        c = config
        self.video_encoder = MMTVideoEncoder(c.expert_dims, c.dim, c.heads, c.attention_layers, c.dropout)
        self.text_global = GlobalTextHead(self.experts, c.dim, c.dim)

    def encode_text(self, text: TextBatch) -> TextEmbeddings:
        """(B, L) -> TextEmbeddings(local (B, 0), global_feats (B, E, D), weights (B, E))."""
        tokens, _ = self.text_tokens(text)
        feats, weights = self.text_global(tokens[:, 0])
        return TextEmbeddings(tokens.new_zeros(len(tokens), 0), feats, weights)

    def encode_video(self, video: VideoBatch, validate: bool = True) -> VideoEmbeddings:
        """Padded experts -> VideoEmbeddings(local (B, 0), global_feats (B, E, D), available (B, E))."""
        out = self.video_encoder(video, validate=validate)
        return VideoEmbeddings(
            out.embeddings.new_zeros(len(out.embeddings), 0), out.embeddings, out.available
        )

    def video_tokens(self, video: VideoBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Contextual tokens for a matching head: (B, E + M, D) transformer outputs and (B, E + M) mask."""
        validate_video_batch(video, self.config.expert_dims)
        x, mask, _ = self.video_encoder.tokens(video)
        return self.video_encoder.encoder(x, src_key_padding_mask=~mask) * mask.unsqueeze(-1), mask

    def similarity(
        self, text: TextEmbeddings, video: VideoEmbeddings, terms: str | None = None
    ) -> torch.Tensor:
        """(N_t, N_v): eq. (4), sum_e w_e a_e cos(F_e^t, F_e^v) / sum_e w_e a_e. terms: None or "global"."""
        self._check_terms(terms)
        return global_similarity(text.global_feats, text.weights, video.global_feats, video.available)


class MeanPool(_DualBase):
    """Mean-pooling dual encoder (CLIP4Clip "meanP"): s = cos(mean_l Wz_l, mean_m Px_m).

    Video: per expert Linear(D_e -> D), then the masked mean over every real token of every available expert
    (CLIP4Clip pools CLIP frame embeddings of one stream; with experts we pool all M tokens). Text: the masked
    mean of projected token states (CLIP4Clip takes CLIP's [EOS] token; a frozen BERT-like encoder's [CLS]
    is a weak sentence vector, so we mean-pool, as sentence-transformers do).
    """

    TERMS = (True, False)

    def __init__(self, config: BaselineConfig, text_encoder: nn.Module | None = None):
        super().__init__(config, text_encoder)
        self.proj = nn.ModuleDict({e: nn.Linear(d, config.dim) for e, d in config.expert_dims.items()})

    def encode_text(self, text: TextBatch) -> TextEmbeddings:
        """(B, L) -> TextEmbeddings(local (B, D) unit norm, global_feats (B, 0, D), weights (B, 0))."""
        tokens, mask = self.text_tokens(text)
        m = mask.unsqueeze(-1).to(tokens.dtype)
        pooled = F.normalize((tokens * m).sum(1) / m.sum(1), dim=-1)
        b = len(pooled)
        return TextEmbeddings(pooled, pooled.new_zeros(b, 0, self.config.dim), pooled.new_zeros(b, 0))

    def video_tokens(self, video: VideoBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected tokens of all experts (B, M, D) (0 where masked) and the (B, M) bool mask."""
        toks, masks = [], []
        for e in self.experts:
            mask = video.token_mask[e].bool() & video.available[e].bool().unsqueeze(1)  # (B, T_e)
            x = video.features[e].masked_fill(~mask.unsqueeze(-1), 0.0)
            toks.append(self.proj[e](x) * mask.unsqueeze(-1))
            masks.append(mask)
        return torch.cat(toks, 1), torch.cat(masks, 1)

    def encode_video(self, video: VideoBatch, validate: bool = True) -> VideoEmbeddings:
        """Padded experts -> VideoEmbeddings(local (B, D) unit norm, global_feats (B, 0, D),
        available (B, 0))."""
        if validate:
            validate_video_batch(video, self.config.expert_dims)
        tokens, mask = self.video_tokens(video)
        pooled = F.normalize(tokens.sum(1) / mask.sum(1, keepdim=True).to(tokens.dtype), dim=-1)
        b = len(pooled)
        return VideoEmbeddings(
            pooled,
            pooled.new_zeros(b, 0, self.config.dim),
            torch.zeros(b, 0, dtype=torch.bool, device=pooled.device),
        )

    def similarity(
        self, text: TextEmbeddings, video: VideoEmbeddings, terms: str | None = None
    ) -> torch.Tensor:
        """(N_t, N_v) cosine similarities of the mean-pooled vectors. terms: None or "local"."""
        self._check_terms(terms)
        return local_similarity(text.local, video.local)
