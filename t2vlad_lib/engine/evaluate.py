"""Evaluation by encoding each side once (the dual-encoder way), then R@K / MdR / MnR both ways.

Vocabulary: N_v test videos, C caption slots per video, N_t = number of real captions (<= N_v * C).

The public code re-runs the model on every 50x50 / 100x100 chunk of (text, video) pairs, re-encoding
each text and video many times. Here every caption and every video is encoded once, and the
(N_t, N_v) matrix is three matrix products over the embeddings (:meth:`T2VLAD.similarity`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.batch import TextBatch, VideoBatch
from ..core.metrics import t2v_metrics, v2t_metrics
from ..core.utils import eval_mode
from ..model.t2vlad import T2VLAD, TextEmbeddings, VideoEmbeddings

__all__ = ["EvalSet", "encode_texts", "encode_videos", "similarity_matrix", "query_topk", "retrieval_metrics",
           "evaluate"]


@dataclass
class EvalSet:
    """A retrieval test set.

    videos: all N_v videos, padded. texts: the N_t real captions in video-major order (the captions of
    video 0, then of video 1, ...). query_masks: (N_v, C) bool, True where a caption exists; its
    True entries, read row by row, correspond to the rows of ``texts``. ``C = 1`` with one fixed
    caption per video is the JSFusion 1k-A protocol.
    """

    videos: VideoBatch
    texts: TextBatch
    query_masks: torch.Tensor
    name: str = "test"

    def __post_init__(self) -> None:
        if self.query_masks.dim() != 2 or self.query_masks.shape[0] != len(self.videos):
            raise ValueError(
                f"{self.name}: query_masks {tuple(self.query_masks.shape)}, "
                f"expected (N_v={len(self.videos)}, C)"
            )
        if int(self.query_masks.sum()) != len(self.texts):
            raise ValueError(
                f"{self.name}: {len(self.texts)} captions but query_masks marks {int(self.query_masks.sum())}"
            )


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _in_batches(encode, batch, cat, model: torch.nn.Module, batch_size: int):
    dev = _device(model)
    return cat(
        [encode(batch.index(slice(i, i + batch_size)).to(dev)) for i in range(0, len(batch), batch_size)]
    )


@torch.no_grad()
def encode_texts(model: T2VLAD, texts: TextBatch, batch_size: int = 256) -> TextEmbeddings:
    """Encode N_t captions once, in batches: -> :class:`TextEmbeddings` on the model's device."""
    return _in_batches(model.encode_text, texts, model.cat_text, model, batch_size)


@torch.no_grad()
def encode_videos(model: T2VLAD, videos: VideoBatch, batch_size: int = 256) -> VideoEmbeddings:
    """Encode N_v videos once, in batches: -> :class:`VideoEmbeddings` on the model's device."""
    return _in_batches(model.encode_video, videos, model.cat_video, model, batch_size)


@torch.no_grad()
def similarity_matrix(
    model: T2VLAD, text: TextEmbeddings, video: VideoEmbeddings, chunk: int = 4096, terms: str | None = None
) -> torch.Tensor:
    """(N_t, N_v) similarities on the CPU, computed on the model's device in chunks of texts.

    terms: "both" | "local" | "global" at test time (``T2VLAD.similarity``); None = the trained terms."""
    kw = {} if terms is None else {"terms": terms}
    rows = []
    for i in range(0, len(text), chunk):
        part = TextEmbeddings(
            text.local[i : i + chunk], text.global_feats[i : i + chunk], text.weights[i : i + chunk]
        )
        rows.append(model.similarity(part, video, **kw).float().cpu())
    return torch.cat(rows)


@torch.no_grad()
def query_topk(
    model: T2VLAD, texts: TextBatch, gallery: VideoEmbeddings, batch_size: int = 256, k: int = 10
):
    """The query side of a search: encode the texts and score them against a pre-encoded ``gallery``
    (``encode_videos``), then take each row's top k: (N_t, k) scores and indices."""
    sims = similarity_matrix(model, encode_texts(model, texts, batch_size), gallery)
    return sims.topk(min(k, sims.shape[1]), dim=1)


def retrieval_metrics(sims: torch.Tensor, query_masks: torch.Tensor) -> dict[str, float]:
    """(N_t, N_v) similarities of the real captions -> ``t2v_R1`` ... ``v2t_MeanR``.

    The rows are spread into the (N_v * C, N_v) layout of :mod:`t2vlad_lib.core.metrics`; missing caption
    slots are NaN rows that the query masks exclude.
    """
    n_v, caps = query_masks.shape
    full = torch.full((n_v * caps, sims.shape[1]), float("nan"), dtype=sims.dtype)
    full[query_masks.reshape(-1)] = sims
    out = {f"t2v_{k}": v for k, v in t2v_metrics(full, query_masks).items()}
    out.update({f"v2t_{k}": v for k, v in v2t_metrics(full, query_masks).items()})
    return out


def evaluate(
    model: T2VLAD, data: EvalSet, batch_size: int = 256, return_sims: bool = False, terms: str | None = None
):
    """Encode once per side, build the similarity matrix, return the metrics (and the matrix).

    The model is put in eval mode (BatchNorm statistics frozen, dropout off) and restored after.
    terms: the similarity terms at test time, "both" | "local" | "global" (Table 4's "w/o global alignment
    at test time" is ``terms="local"`` on the full model); None = the terms the model was trained with.
    """
    with eval_mode(model):
        text = encode_texts(model, data.texts, batch_size)
        video = encode_videos(model, data.videos, batch_size)
        sims = similarity_matrix(model, text, video, terms=terms)
    metrics = retrieval_metrics(sims, data.query_masks)
    return (metrics, sims) if return_sims else metrics
