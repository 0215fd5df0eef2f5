"""The two batch types every stage agrees on: padded expert features with masks, and captions.

Shapes use one vocabulary: B batch, L text tokens, H text-encoder width, E experts,
T_e segments of expert e, D_e feature width of expert e.

Data flows one way: ``t2vlad_lib.data`` builds these, the encoders consume them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch

__all__ = ["TextBatch", "VideoBatch"]


def _to(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def _select(items: list, idx: torch.Tensor | slice | list[int]) -> list:
    """The entries of a per-row list that a tensor index ``idx`` selects (empty lists stay empty)."""
    if not items:
        return items
    if isinstance(idx, slice):
        return items[idx]
    pick = torch.as_tensor(idx).tolist()
    return [items[i] for i in (pick if isinstance(pick, list) else [pick])]


@dataclass
class VideoBatch:
    """Padded multi-expert video features.

    Attributes:
        features: expert name -> (B, T_e, D_e) float tensor; padded and missing positions are 0.
        token_mask: expert name -> (B, T_e) bool, True where a real segment is.
        available: expert name -> (B,) bool, False where the expert is missing for that video
            (NaN in the released pickles). A missing expert has an all-False token mask.
        video_ids: the B video ids, for error messages and retrieval output.
    """

    features: dict[str, torch.Tensor]
    token_mask: dict[str, torch.Tensor]
    available: dict[str, torch.Tensor]
    video_ids: list[str] = field(default_factory=list)

    @property
    def experts(self) -> list[str]:
        return list(self.features)

    def __len__(self) -> int:
        return next(iter(self.features.values())).shape[0]

    def to(self, device: torch.device | str) -> VideoBatch:
        return replace(self, **{f.name: _to(getattr(self, f.name), device) for f in fields(self)})

    def index(self, idx: torch.Tensor | slice | list[int]) -> VideoBatch:
        """Select rows (videos) of the batch."""
        return VideoBatch(
            features={k: v[idx] for k, v in self.features.items()},
            token_mask={k: v[idx] for k, v in self.token_mask.items()},
            available={k: v[idx] for k, v in self.available.items()},
            video_ids=_select(self.video_ids, idx),
        )


@dataclass
class TextBatch:
    """Tokenised captions, optionally with cached token states of a frozen encoder.

    Attributes:
        input_ids: (B, L) long token ids ([CLS] ... [SEP] [PAD] ...).
        attention_mask: (B, L) long/bool, 1 where a real token (incl. [CLS]/[SEP]) is, 0 on [PAD].
        states: optional (B, L, H) cached last-layer token states; when given, the text encoder
            is not run (frozen-encoder training on CPU).
        captions: the B caption strings, for display and error messages.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    states: torch.Tensor | None = None
    captions: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device | str) -> TextBatch:
        return replace(self, **{f.name: _to(getattr(self, f.name), device) for f in fields(self)})

    def index(self, idx: torch.Tensor | slice | list[int]) -> TextBatch:
        """Select rows (captions) of the batch."""
        return TextBatch(
            input_ids=self.input_ids[idx],
            attention_mask=self.attention_mask[idx],
            states=None if self.states is None else self.states[idx],
            captions=_select(self.captions, idx),
        )
