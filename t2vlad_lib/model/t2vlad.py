"""T2VLAD (Wang, Zhu, Yang, CVPR 2021): composes the text encoder, video encoder, cross-modal VLAD and
global alignment into a dual encoder.

Vocabulary: B batch, L text tokens, H text-encoder width, E experts, M video tokens, D common width,
K clusters, G ghost clusters; N_t / N_v texts / videos in a retrieval gallery.

    text  (B, L, H) --proj--> (B, L, D) --VLAD--> t (B, K*D) --GEU_e, softmax--> F^text (B, E, D), w (B, E)
    video experts --VideoEncoder--> tokens (B, M, D) --VLAD--> v (B, K*D);  global F^video (B, E, D)
    s = (s_local + s_global) / 2,  s_local = <t, v>,  s_global = eq. (4)

Nothing mixes text and video before the last dot products, so ``similarity(encode_text(...),
encode_video(...))`` over embeddings cached once per side equals the paired ``forward`` (eval mode).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..core.batch import TextBatch, VideoBatch
from .alignment import GlobalTextHead, global_similarity, local_similarity
from .video import VideoEncoder
from .vlad import build_vlad

__all__ = ["ModelConfig", "TERMS", "T2VLAD", "TextEmbeddings", "VideoEmbeddings", "text_states"]


# the similarity terms a model trains with or is evaluated on -> (use s_local, use s_global)
TERMS: dict[str, tuple[bool, bool]] = {"both": (True, True), "local": (True, False), "global": (False, True)}


@dataclass
class ModelConfig:
    """Everything that shapes the model's parameters and its similarity. Its values are checked where a
    config is loaded (``engine.config``, ``ConfigError``); the model only guards against what would crash.

    expert_dims: expert name -> D_e (order = E). text_dim: H of the text encoder.
    dim: D (768 in the paper). num_clusters: K (9 MSRVTT/LSMDC, 16 ActivityNet). ghost_clusters: G (1).
    heads, dropout, attention_layers: the video self-attention (4, 0.1, 1 in the paper).
    vlad: the cross-modal VLAD, ``{"kind": "shared" | "separate" | "text_only", **that kind's options}``
    (Table 5; :func:`vlad.build_vlad`, e.g. ``{"kind": "shared", "video_assignment": "trainable"}``).
    assignment: "batchnorm" | "bias" (:class:`NetVLAD`).
    token_norm: L2-normalise each projected expert token before self-attention (the port; not in the paper).
    terms: the similarity terms trained with (and used at test unless ``evaluate(..., terms=...)`` says
    otherwise): "both" | "local" | "global" (:data:`TERMS`; Table 4 "global-only training" is "global").
    text_proj: a Linear(H -> D) on the text tokens (needed when H != D or the encoder is frozen; the
    paper fine-tunes BERT with H = D = 768 and has none).
    text_global_from: input of the global text features and expert weights: "vlad" (the K*D text VLAD
    vector, the port) or "cls" (the [CLS] token, as the paper's "w/o local alignment" row, after MMT).
    """

    expert_dims: dict[str, int] = field(default_factory=dict)
    text_dim: int = 768
    dim: int = 768
    num_clusters: int = 9
    ghost_clusters: int = 1
    heads: int = 4
    dropout: float = 0.1
    attention_layers: int = 1
    vlad: dict[str, str] = field(default_factory=lambda: {"kind": "shared"})
    assignment: str = "batchnorm"
    token_norm: bool = True
    terms: str = "both"
    text_proj: bool = True
    text_global_from: str = "vlad"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TextEmbeddings:
    """Per-caption embeddings: local (N_t, K*D) VLAD vector, global_feats (N_t, E, D), weights (N_t, E)."""

    local: torch.Tensor
    global_feats: torch.Tensor
    weights: torch.Tensor

    def __len__(self) -> int:
        return self.local.shape[0]


@dataclass
class VideoEmbeddings:
    """Per-video embeddings: local (N_v, K*D), global_feats (N_v, E, D), available (N_v, E) bool."""

    local: torch.Tensor
    global_feats: torch.Tensor
    available: torch.Tensor

    def __len__(self) -> int:
        return self.local.shape[0]


def text_states(text: TextBatch, encoder: nn.Module | None, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached or freshly encoded token states (B, L, H = ``width``) and the (B, L) bool mask, checked: every
    caption has a token, and the states fit the mask and H (T2VLAD and the baselines share this)."""
    mask = text.attention_mask.bool()
    if mask.dim() != 2 or not mask.any(1).all():
        empty = (~mask.any(1)).nonzero().flatten().tolist() if mask.dim() == 2 else []
        caps = [text.captions[i] for i in empty] if text.captions else empty
        raise ValueError(f"empty text (no token in attention_mask) for captions {caps}")
    if text.states is not None:
        states = text.states
    elif encoder is not None:
        states, _ = encoder(text.input_ids, text.attention_mask)
    else:
        raise ValueError("TextBatch has no cached states and the model has no text encoder")
    if states.shape[:2] != mask.shape or states.shape[-1] != width:
        raise ValueError(
            f"text states {tuple(states.shape)} do not fit mask {tuple(mask.shape)} and text_dim {width}"
        )
    return states, mask


def _cat(items: list, cls):
    return cls(*[torch.cat([getattr(x, f) for x in items]) for f in cls.__dataclass_fields__])


class T2VLAD(nn.Module):
    """The full model. ``text_encoder`` is optional: without it, :class:`TextBatch` must carry cached
    token states (frozen-encoder training).

    Args:
        config: :class:`ModelConfig`.
        text_encoder: a module with ``forward(input_ids (B, L), attention_mask (B, L)) -> (states
            (B, L, H), mask (B, L))`` and ``hidden_size == config.text_dim`` (see ``t2vlad_lib.model.text``).
    """

    def __init__(self, config: ModelConfig, text_encoder: nn.Module | None = None):
        super().__init__()
        self.config = config
        c = config
        if not c.expert_dims:
            raise ValueError("T2VLAD: config.expert_dims is empty; give expert name -> feature width")
        if not c.text_proj and c.text_dim != c.dim:
            raise ValueError(f"T2VLAD: text_proj=False needs text_dim == dim, got {c.text_dim} != {c.dim}")
        if c.terms not in TERMS or c.text_global_from not in ("vlad", "cls"):
            raise ValueError(f"T2VLAD: terms {c.terms!r} not in {tuple(TERMS)} or text_global_from "
                             f"{c.text_global_from!r} not in ('vlad', 'cls')")
        if text_encoder is not None and getattr(text_encoder, "hidden_size", c.text_dim) != c.text_dim:
            raise ValueError(f"text encoder width {text_encoder.hidden_size} != config.text_dim {c.text_dim}")
        self.text_encoder = text_encoder
        self.text_proj = nn.Linear(c.text_dim, c.dim) if c.text_proj else nn.Identity()
        self.video_encoder = VideoEncoder(
            c.expert_dims, c.dim, c.heads, c.dropout, c.attention_layers, c.token_norm
        )
        self.vlad = build_vlad(c.vlad, c.dim, c.num_clusters, c.ghost_clusters, c.assignment)
        global_in = self.vlad.out_dim if c.text_global_from == "vlad" else c.dim
        self.text_global = GlobalTextHead(list(c.expert_dims), global_in, c.dim)

    @property
    def experts(self) -> list[str]:
        return list(self.config.expert_dims)

    def text_tokens(self, text: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Text tokens in the common space: (B, L, D) and the (B, L) bool mask ([PAD] masked out;
        the port feeds padding into the VLAD unmasked: documented deviation)."""
        states, mask = text_states(text, self.text_encoder, self.config.text_dim)
        return self.text_proj(states.to(self.vlad.text_vlad.centers.dtype)), mask

    def encode_text(self, text: TextBatch) -> TextEmbeddings:
        """(B, L) captions -> :class:`TextEmbeddings` (local (B, K*D), global (B, E, D), weights (B, E))."""
        tokens, mask = self.text_tokens(text)
        local = self.vlad.encode_text(tokens, mask)
        feats, weights = self.text_global(local if self.config.text_global_from == "vlad" else tokens[:, 0])
        return TextEmbeddings(local, feats, weights)

    def encode_video(self, video: VideoBatch, validate: bool = True) -> VideoEmbeddings:
        """Padded experts -> :class:`VideoEmbeddings` (local (B, K*D), global (B, E, D), available (B, E)).

        ``validate`` checks dims and finiteness first (cheap; benchmarks turn it off)."""
        enc = self.video_encoder(video, validate=validate)
        local = self.vlad.encode_video(enc.tokens, enc.token_mask)
        return VideoEmbeddings(local, enc.global_feats, enc.available)

    def terms(self) -> tuple[bool, bool]:
        """(use local, use global) of the trained terms (``config.terms``)."""
        return TERMS[self.config.terms]

    def similarity(
        self, text: TextEmbeddings, video: VideoEmbeddings, terms: str | None = None
    ) -> torch.Tensor:
        """(N_t, N_v) similarities from embeddings: (s_local + s_global) / 2, or the one term in use.

        terms: "both" | "local" | "global" at test time (Table 4 "w/o global alignment at test time" is
        "local"); None = the trained terms.
        """
        use_local, use_global = TERMS[terms] if terms is not None else self.terms()
        if not use_global:
            return local_similarity(text.local, video.local)
        s_global = global_similarity(text.global_feats, text.weights, video.global_feats, video.available)
        if not use_local:
            return s_global
        # (s_global + <t, v>) / 2 in one fused matmul-add: no extra passes over the (N_t, N_v) matrix
        return torch.addmm(s_global, text.local, video.local.T, beta=0.5, alpha=0.5)

    def forward(self, text: TextBatch, video: VideoBatch) -> torch.Tensor:
        """(B_t, L) captions x (B_v, ...) videos -> (B_t, B_v) similarity matrix."""
        return self.similarity(self.encode_text(text), self.encode_video(video))

    @staticmethod
    def cat_text(items: list[TextEmbeddings]) -> TextEmbeddings:
        """Concatenate chunks of text embeddings."""
        return _cat(items, TextEmbeddings)

    @staticmethod
    def cat_video(items: list[VideoEmbeddings]) -> VideoEmbeddings:
        """Concatenate chunks of video embeddings."""
        return _cat(items, VideoEmbeddings)
