"""A cross-encoder matching head that re-ranks the dual encoder's top-k (CLIP2TV's "video-text matching",
Gao et al. 2021, arXiv 2111.05610; the ALBEF/ViLT recipe of a match token and hard negatives).

Vocabulary: P (text, video) pairs, L text tokens, M video tokens, D common width, N_q queries (texts),
N_g gallery videos, k re-ranked candidates per query.

    [MATCH] + type_0,  text tokens (L, D) + type_1,  video tokens (M, D) + type_2
        --> pre-LN transformer (masked) --> Linear(D -> 1) on [MATCH] = match logit

The tokens are the frozen dual encoder's own: T2VLAD's projected text tokens and its contextual video
tokens (or a baseline's, ``text_tokens`` / ``video_tokens``). Training: binary cross-entropy with every
in-batch positive pair (label 1) and, per text and per video, its hardest in-batch negatives by the dual
similarity (label 0). Inference: the dual encoder ranks the whole gallery, the head scores only the top-k
of each query and reorders them; items beyond k keep the dual order. Cost per query: k head passes.
Deviation from CLIP2TV: the head is trained after the dual encoder (frozen), not jointly end to end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .batch import TextBatch, VideoBatch

__all__ = [
    "MatchingHead",
    "text_side",
    "video_side",
    "pair_logits",
    "all_pair_logits",
    "mine_hard_negatives",
    "matching_loss",
    "rerank",
    "train_matching",
    "MatchingResult",
]


class MatchingHead(nn.Module):
    """Small transformer over [MATCH] + text tokens + video tokens with type embeddings -> one logit.

    Args: dim: D. heads, layers, dropout: the transformer (FFN width 2D).
    """

    def __init__(self, dim: int, heads: int = 4, layers: int = 2, dropout: float = 0.1):
        super().__init__()
        self.config = {"dim": dim, "heads": heads, "layers": layers, "dropout": dropout}
        self.match_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.type_emb = nn.Embedding(3, dim)  # 0 [MATCH], 1 text, 2 video
        self.norm_in = nn.LayerNorm(dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False
        )
        self.out = nn.Linear(dim, 1)

    def forward(self, text: Tensor, text_mask: Tensor, video: Tensor, video_mask: Tensor) -> Tensor:
        """text (P, L, D), text_mask (P, L) bool, video (P, M, D), video_mask (P, M) bool -> (P,) logits.

        Masked tokens change nothing (key-padding mask); each pair needs >= 1 real token per side."""
        if (
            text.shape[0] != video.shape[0]
            or text.shape[:2] != text_mask.shape
            or video.shape[:2] != video_mask.shape
        ):
            raise ValueError(
                f"MatchingHead: text {tuple(text.shape)}/{tuple(text_mask.shape)} and video "
                f"{tuple(video.shape)}/{tuple(video_mask.shape)} must be (P, L, D)/(P, L), (P, M, D)/(P, M)"
            )
        p = text.shape[0]
        types = self.type_emb.weight
        x = torch.cat(
            [
                self.match_token.expand(p, 1, -1) + types[0],
                self.norm_in(text) + types[1],
                self.norm_in(video) + types[2],
            ],
            1,
        )  # (P, 1 + L + M, D)
        mask = torch.cat([text_mask.new_ones(p, 1), text_mask.bool(), video_mask.bool()], 1)
        return self.out(self.encoder(x, src_key_padding_mask=~mask)[:, 0]).squeeze(-1)


def text_side(dual: nn.Module, text: TextBatch) -> tuple[Tensor, Tensor]:
    """The dual encoder's text tokens: (B, L, D) projected states and the (B, L) bool mask."""
    return dual.text_tokens(text)


def video_side(dual: nn.Module, video: VideoBatch) -> tuple[Tensor, Tensor]:
    """The dual encoder's video tokens: (B, M, D) and the (B, M) bool mask (T2VLAD: after self-attention)."""
    if hasattr(dual, "video_tokens"):
        return dual.video_tokens(video)
    enc = dual.video_encoder(video)
    return enc.tokens, enc.token_mask


def pair_logits(
    head: MatchingHead,
    text: Tensor,
    text_mask: Tensor,
    video: Tensor,
    video_mask: Tensor,
    ti: Tensor,
    vi: Tensor,
    chunk: int = 1024,
) -> Tensor:
    """Logits of the pairs (text ti[p], video vi[p]): tokens (N_t, L, D), (N_v, M, D); ti, vi (P,) -> (P,)."""
    out = [
        head(
            text[ti[s : s + chunk]],
            text_mask[ti[s : s + chunk]],
            video[vi[s : s + chunk]],
            video_mask[vi[s : s + chunk]],
        )
        for s in range(0, len(ti), chunk)
    ]
    return torch.cat(out) if out else text.new_zeros(0)


def all_pair_logits(
    head: MatchingHead, text: Tensor, text_mask: Tensor, video: Tensor, video_mask: Tensor
) -> Tensor:
    """Every (text, video) pair: (B_t, L, D), (B_v, M, D) -> (B_t, B_v) logits (B_t * B_v head passes)."""
    bt, bv = text.shape[0], video.shape[0]
    ti = torch.arange(bt, device=text.device).repeat_interleave(bv)
    vi = torch.arange(bv, device=text.device).repeat(bt)
    return pair_logits(head, text, text_mask, video, video_mask, ti, vi).view(bt, bv)


def mine_hard_negatives(sims: Tensor, positives: Tensor, n: int = 1) -> Tensor:
    """The n most similar non-positive columns of each row: sims (B_t, B_v), positives (B_t,) -> (B_t, n)."""
    if sims.ndim != 2 or positives.shape != sims.shape[:1] or not 1 <= n < sims.shape[1]:
        raise ValueError(
            f"mine_hard_negatives: sims {tuple(sims.shape)}, positives {tuple(positives.shape)}, "
            f"n={n}: expected (B_t, B_v), (B_t,) and 1 <= n < B_v"
        )
    masked = sims.detach().scatter(1, positives.view(-1, 1), float("-inf"))
    return masked.topk(n, dim=1).indices


def matching_loss(pos_logits: Tensor, neg_logits: Tensor) -> Tensor:
    """Binary cross-entropy, label 1 on the positive pairs' logits and 0 on the negatives', mean over all."""
    logits = torch.cat([pos_logits.flatten(), neg_logits.flatten()])
    labels = torch.cat([torch.ones(pos_logits.numel()), torch.zeros(neg_logits.numel())]).to(logits)
    return F.binary_cross_entropy_with_logits(logits, labels)


def rerank(dual_sims: Tensor, score_fn: Callable[[Tensor, Tensor], Tensor], k: int) -> tuple[Tensor, Tensor]:
    """Re-rank each query's top-k by the matching head.

    Args:
        dual_sims: (N_q, N_g) dual-encoder similarities.
        score_fn: (query ids (P,), gallery ids (P,)) -> (P,) match logits, called once on N_q * k pairs.
        k: candidates per query (clipped to N_g).
    Returns:
        scores (N_q, N_g): the dual scores, except the top-k, which are lifted above every other item of
        their row and ordered by match logit (ties: dual order) - feed to ``evaluate.retrieval_metrics``;
        order (N_q, N_g) long: the new ranking. Only the top-k are permuted among themselves.
    """
    n_q, n_g = dual_sims.shape
    k = max(1, min(k, n_g))
    order = dual_sims.argsort(dim=1, descending=True, stable=True)  # (N_q, N_g)
    top = order[:, :k]
    logits = score_fn(torch.arange(n_q).repeat_interleave(k), top.flatten()).view(n_q, k).to(dual_sims)
    perm = logits.argsort(dim=1, descending=True, stable=True)  # ties keep the dual order
    new_top = top.gather(1, perm)
    scores = dual_sims.clone()
    lift = dual_sims.max(1, keepdim=True).values + 1.0 + torch.arange(k - 1, -1, -1).to(dual_sims)
    scores.scatter_(1, new_top, lift)  # rank r of the top-k gets row max + 1 + (k - 1 - r)
    return scores, torch.cat([new_top, order[:, k:]], 1)


@dataclass
class MatchingResult:
    """Test metrics before/after re-ranking (t2v), the R@1 gain (points), seconds per query: the dual
    encoder's whole evaluation (encode both sides, similarity) / N_q, and the added re-ranking cost, i.e. the
    k head passes / N_q (the text tokens come out of the dual pass; video tokens are encoded once per
    gallery, like the index: ``token_seconds`` for the whole test set); per-epoch mean losses; checkpoint;
    ``train_seconds``: the head's training (the frozen dual encoder's forward passes included). The same
    fields, and ``head_params``, go to ``<out>.json`` beside the checkpoint."""

    k: int
    dual: dict[str, float]
    reranked: dict[str, float]
    r1_gain: float
    dual_seconds_per_query: float
    rerank_seconds_per_query: float
    token_seconds: float = 0.0
    train_seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    path: Path | None = None
    head: MatchingHead | None = None


@torch.no_grad()
def _tokens(fn, batch: Any, size: int, dev: torch.device) -> tuple[Tensor, Tensor]:
    parts = [fn(batch.index(slice(i, i + size)).to(dev)) for i in range(0, len(batch), size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def train_matching(
    cfg,
    dual_checkpoint: str | Path,
    *,
    epochs: int = 5,
    lr: float = 1e-3,
    negatives: int = 1,
    k: int = 10,
    layers: int = 2,
    heads: int = 4,
    data=None,
    out: str | Path | None = None,
    progress: bool = False,
) -> MatchingResult:
    """Train a :class:`MatchingHead` on a frozen dual encoder, then re-rank its test top-k.

    Args:
        cfg: the TrainConfig whose data/batch size/seed to use (usually the dual run's).
        dual_checkpoint: the trainer's ``best.pt`` (its own config rebuilds the dual encoder).
        epochs, lr (AdamW), negatives: hard negatives per text and per video per batch; k: re-rank depth.
        data: a ``Prepared`` to reuse. out: checkpoint path (default ``matching.pt`` beside the dual's).
    """
    from .checkpoint import atomic_write_text, save_checkpoint
    from .evaluate import evaluate, retrieval_metrics
    from .pipeline import prepare
    from .runs import load_run
    from .utils import seed_everything

    seed_everything(cfg.seed)
    data = data or prepare(cfg, verbose=progress)
    # the dual encoder is frozen here; a fine-tuned text encoder is the model's own copy (build_model),
    # so freezing it leaves the one inside ``data`` untouched
    loaded = load_run(dual_checkpoint, data=data)
    ckpt, dual = loaded.payload, loaded.model
    dual.eval().requires_grad_(False)
    dev = next(dual.parameters()).device
    head = MatchingHead(dual.config.dim, heads, layers).to(dev)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    losses, t_train = [], time.perf_counter()
    for epoch in range(epochs):
        head.train()
        run = []
        for text, video in data.epoch_batches(epoch, cfg.seed + 7, cfg.batch_size):
            text, video = text.to(dev), video.to(dev)
            with torch.no_grad():
                (tt, tm), (vt, vm) = text_side(dual, text), video_side(dual, video)
                sims = dual.similarity(dual.encode_text(text), dual.encode_video(video))  # (B, B)
            b = len(sims)
            diag = torch.arange(b, device=dev)
            hard_v = mine_hard_negatives(sims, diag, negatives)  # (B, n): videos for each text
            hard_t = mine_hard_negatives(sims.T, diag, negatives)  # (B, n): texts for each video
            ti = torch.cat([diag, diag.repeat_interleave(negatives), hard_t.flatten()])
            vi = torch.cat([diag, hard_v.flatten(), diag.repeat_interleave(negatives)])
            logits = pair_logits(head, tt, tm, vt, vm, ti, vi)
            loss = matching_loss(logits[:b], logits[b:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses.append(sum(run) / max(1, len(run)))
        if progress:
            print(f"matching epoch {epoch + 1}/{epochs}  bce {losses[-1]:.4f}")
    t_train = time.perf_counter() - t_train
    head.eval()
    test = data.test
    t0 = time.perf_counter()
    dual_metrics, sims = evaluate(dual, test, cfg.eval_batch_size, return_sims=True)
    t_dual = time.perf_counter() - t0
    t0 = time.perf_counter()
    tt, tm = _tokens(lambda b: text_side(dual, b), test.texts, cfg.eval_batch_size, dev)
    vt, vm = _tokens(lambda b: video_side(dual, b), test.videos, cfg.eval_batch_size, dev)
    t_tokens = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        scores, _ = rerank(
            sims, lambda q, g: pair_logits(head, tt, tm, vt, vm, q.to(dev), g.to(dev)).cpu(), k
        )
    t_rerank = time.perf_counter() - t0
    reranked = retrieval_metrics(scores, test.query_masks)
    pick = lambda m: {key: v for key, v in m.items() if key.startswith("t2v_")}  # noqa: E731
    n_q = len(test.texts)
    out = Path(out) if out is not None else Path(dual_checkpoint).with_name("matching.pt")
    result = MatchingResult(
        k,
        pick(dual_metrics),
        pick(reranked),
        reranked["t2v_R1"] - dual_metrics["t2v_R1"],
        t_dual / n_q,
        t_rerank / n_q,
        t_tokens,
        t_train,
        losses,
        out,
        head,
    )
    save_checkpoint(
        out,
        {
            "kind": "matching",
            "model": head.state_dict(),
            "head": head.state_dict(),
            "head_config": head.config,
            "config": ckpt["config"],
            "dual_config": ckpt["config"],
            "dual": ckpt["model"],
            "k": k,
            "epochs": epochs,
            "losses": losses,
            "dual_metrics": result.dual,
            "reranked_metrics": result.reranked,
        },
    )
    summary = {
        f: getattr(result, f)
        for f in (
            "k",
            "dual",
            "reranked",
            "r1_gain",
            "dual_seconds_per_query",
            "rerank_seconds_per_query",
            "token_seconds",
            "train_seconds",
            "losses",
        )
    }
    summary["head_params"] = sum(p.numel() for p in head.parameters())
    atomic_write_text(out.with_suffix(".json"), json.dumps(summary, indent=2))
    return result
