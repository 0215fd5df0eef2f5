"""A cross-encoder matching head that re-ranks the dual encoder's top-k (CLIP2TV's "video-text matching",
Gao et al. 2021, arXiv 2111.05610; the ALBEF/BLIP recipe of a match token and similarity-sampled negatives).

Vocabulary: P (text, video) pairs, L text tokens, M video tokens, D common width, N_q queries (texts),
N_g gallery videos, k re-ranked candidates per query, s a pair's dual similarity.

    [MATCH] + type_0,  text tokens (L, D) + type_1,  video tokens (M, D) + type_2
        --> pre-LN transformer (masked) --> Linear(D -> 1) on [MATCH] (+ a * s: a residual head) = logit
    (or cross-attention: [MATCH] and the words attend to each other, then to the video tokens)

The tokens are the frozen dual encoder's own: T2VLAD's projected text tokens and its contextual video tokens
(or a baseline's, ``text_tokens`` / ``video_tokens``). Training (:func:`train_matching`, a
:class:`MatchingRecipe`): binary cross-entropy, label 1 on each positive pair and 0 on its negatives, drawn
per text and per video in proportion to softmax(s / t) over the batch or the whole training gallery, plus
uniform ones (or the hardest in the batch: the first recipe); or *listwise*, on the task the head faces at
test time: each caption's top-k training videos under the frozen dual encoder (its positive put in when the
dual misses it, or the caption left out) scored together, softmax cross-entropy with the positive as the class
(localized contrastive estimation, Gao, Dai and Callan, ECIR 2021). Inference (``rerank.py``): the dual
encoder ranks the whole gallery, the head scores only the top-k of each query, and the top-k are reordered by
a fusion of the two scores whose weight, like k, is chosen on the validation split; items beyond k keep the
dual order. Cost per query: k head passes. CLIP2TV trains its head jointly with the dual encoder:
:func:`train_matching` does so with a joint recipe (listwise, candidates from each batch's similarities), and
otherwise trains it after the dual encoder, on the frozen one. What the head reads of a video
(:func:`token_sides`): T2VLAD's contextual tokens, its per-expert projected tokens before self-attention, or,
as a diagnostic on DigitClips, the true labels of what each token shows (:class:`LabelTokens`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.batch import TextBatch, VideoBatch
from ..core.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from ..core.metrics import t2v_ranks
from ..core.utils import eval_mode, get_device, seed_everything, time_in_turns
from ..data.digitclips import read_attributes
from ..data.labels import token_labels
from ..engine.config import from_dict
from ..engine.evaluate import encode_videos, evaluate, query_topk, retrieval_metrics
from ..engine.loop import Callback, FitState, fit
from ..engine.pipeline import prepare
from ..engine.runs import build_model, load_run, load_weights
from ..engine.train import optimizer_and_loss
from ..model.optim import make_scheduler
from .rerank import rerank_scored, select_rerank, top_candidates

__all__ = [
    "MatchingHead",
    "text_side",
    "video_side",
    "LabelTokens",
    "token_sides",
    "pair_logits",
    "all_pair_logits",
    "mine_hard_negatives",
    "sample_negatives",
    "draw_negatives",
    "matching_loss",
    "listwise_candidates",
    "listwise_loss",
    "in_top_k",
    "joint_loss",
    "MatchingRecipe",
    "FIRST_RECIPE",
    "RECIPE",
    "PAIRWISE",
    "LISTWISE",
    "train_matching",
    "MatchingResult",
    "test_ranks",
    "load_matching",
    "rerank_test_ranks",
]


class MatchingHead(nn.Module):
    """Small transformer over [MATCH] + text tokens + video tokens with type embeddings -> one logit.

    Args: dim: D. heads, layers, dropout: the transformer (FFN width 2D). residual: the logit is
    ``a * s + out([MATCH])`` with s the pair's dual similarity and a learned scale a, initially
    ``dual_scale`` (the sharpness of the negative sampling, 1 / 0.05): the head starts from what the dual
    encoder knows and its transformer learns the correction (``forward(dual=...)``). cross: instead of one
    joint self-attention over all tokens, [MATCH] and the words attend to each other and then to the video
    tokens (cross-attention: text queries, video keys; a pre-LN transformer decoder without a causal mask).
    label_vocab: the video input is a (P, M, label_vocab) multi-hot of each token's true labels
    (:func:`label_tokens`), embedded by a linear layer of the head (the attribute-label diagnostic).
    """

    def __init__(
        self, dim: int, heads: int = 4, layers: int = 2, dropout: float = 0.1, residual: bool = False,
        dual_scale: float = 20.0, cross: bool = False, label_vocab: int | None = None,
    ):
        super().__init__()
        self.config = {"dim": dim, "heads": heads, "layers": layers, "dropout": dropout, "residual": residual,
                       "cross": cross, "label_vocab": label_vocab}
        self.residual, self.cross = residual, cross
        if residual:
            self.dual_scale = nn.Parameter(torch.tensor(float(dual_scale)))
        if label_vocab is not None:  # video "tokens" are multi-hot label vectors (P, M, V): embed them
            self.video_in = nn.Linear(label_vocab, dim)
        self.match_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.type_emb = nn.Embedding(3, dim)  # 0 [MATCH], 1 text, 2 video
        self.norm_in = nn.LayerNorm(dim)
        if cross:  # [MATCH] + words attend to each other, then to the video tokens (keys and values)
            dec = nn.TransformerDecoderLayer(
                dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerDecoder(dec, layers, norm=nn.LayerNorm(dim))
        else:
            layer = nn.TransformerEncoderLayer(
                dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(
                layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False
            )
        self.out = nn.Linear(dim, 1)

    def forward(
        self, text: Tensor, text_mask: Tensor, video: Tensor, video_mask: Tensor, dual: Tensor | None = None
    ) -> Tensor:
        """text (P, L, D), text_mask (P, L) bool, video (P, M, D), video_mask (P, M) bool -> (P,) logits;
        dual (P,): the pairs' dual similarities, required by a residual head and ignored by the others.

        Masked tokens change nothing (key-padding mask); each pair needs >= 1 real token per side."""
        if self.residual and (dual is None or dual.shape != text.shape[:1]):
            raise ValueError("MatchingHead(residual=True): give dual=(P,) dual similarities of the pairs")
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
        (text, text_mask), (video, video_mask) = _trimmed(text, text_mask), _trimmed(video, video_mask)
        if hasattr(self, "video_in"):
            video = self.video_in(video)
        types = self.type_emb.weight
        query = torch.cat([self.match_token.expand(p, 1, -1) + types[0], self.norm_in(text) + types[1]], 1)
        query_mask = torch.cat([text_mask.new_ones(p, 1), text_mask.bool()], 1)
        video = self.norm_in(video) + types[2]
        if self.cross:
            out = self.encoder(query, video, tgt_key_padding_mask=~query_mask,
                               memory_key_padding_mask=~video_mask.bool())
        else:  # one sequence (P, 1 + L + M, D)
            mask = torch.cat([query_mask, video_mask.bool()], 1)
            out = self.encoder(torch.cat([query, video], 1), src_key_padding_mask=~mask)
        logit = self.out(out[:, 0]).squeeze(-1)
        return logit + self.dual_scale * dual if self.residual else logit


def _trimmed(tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop the trailing positions that are padding in every row (they change no logit; shorter = faster)."""
    real = mask.bool().any(0).nonzero()
    n = int(real[-1]) + 1 if len(real) else 1
    return tokens[:, :n], mask[:, :n]


def text_side(dual: nn.Module, text: TextBatch) -> tuple[Tensor, Tensor]:
    """The dual encoder's text tokens: (B, L, D) projected states and the (B, L) bool mask."""
    return dual.text_tokens(text)


def video_side(dual: nn.Module, video: VideoBatch, tokens: str = "contextual") -> tuple[Tensor, Tensor]:
    """The dual encoder's video tokens: (B, M, D) and the (B, M) bool mask. tokens: "contextual" (T2VLAD:
    after self-attention) or "projected" (each expert's projected tokens before it)."""
    if tokens == "projected":
        enc = getattr(dual, "video_encoder", None)
        if not hasattr(enc, "local_tokens"):
            raise ValueError(f"video_side: {type(dual).__name__} has no per-expert projected tokens "
                             "(video_encoder.local_tokens); use tokens='contextual'")
        projected, mask, _ = enc.local_tokens(video)
        return projected, mask
    if tokens != "contextual":
        raise ValueError(f"video_side: tokens must be 'contextual' or 'projected', got {tokens!r}")
    if hasattr(dual, "video_tokens"):
        return dual.video_tokens(video)
    enc = dual.video_encoder(video)
    return enc.tokens, enc.token_mask


def _label_pairs(token: dict[str, object]) -> list[tuple[str, object]]:
    """One token's labels as (attribute, value) pairs: an actor attribute gives one pair per visible value."""
    return [(a, x) for a, v in token.items() for x in (v if isinstance(v, tuple) else (v,))]


class LabelTokens:
    """The attribute-label diagnostic's video side: a video batch -> (B, M, V) multi-hot vectors of what each
    of the dual encoder's token positions truly shows (``data.labels.token_labels``: digits, colours, sizes,
    motions of the visible actors, the shot's scene, the sound) plus which expert it is, and the dual
    encoder's (B, M) token mask. ``vocab``: the V (attribute, value) pairs, from the specs of ``video_ids``
    (the training videos); a value never seen there is left out."""

    def __init__(self, dual: nn.Module, specs: dict[str, dict], video_ids: list[str]):
        self.dual, self.specs, self.experts = dual, specs, list(dual.video_encoder.experts)
        vocab = {("expert", e) for e in self.experts}
        for vid in video_ids:
            for e in self.experts:
                for token in token_labels(self._spec(vid), e):
                    vocab.update(_label_pairs(token))
        self.vocab = sorted(vocab, key=str)
        self.index = {pair: i for i, pair in enumerate(self.vocab)}

    def _spec(self, vid: str) -> dict:
        if vid not in self.specs:
            raise KeyError(f"LabelTokens: video {vid!r} has no spec in attributes.json")
        return self.specs[vid]

    def __call__(self, video: VideoBatch) -> tuple[Tensor, Tensor]:
        _, mask, owner = self.dual.video_encoder.local_tokens(video)
        out = torch.zeros(*mask.shape, len(self.vocab))
        for b, vid in enumerate(video.video_ids):
            for i, e in enumerate(self.experts):
                positions = (owner == i).nonzero().flatten().tolist()
                for pos, token in zip(positions, token_labels(self._spec(vid), e), strict=True):
                    cols = [self.index[pair] for pair in [("expert", e), *_label_pairs(token)]
                            if pair in self.index]
                    out[b, pos, cols] = 1.0
        return out.to(mask.device), mask


def token_sides(dual: nn.Module, tokens: str = "contextual", data=None):
    """(text batch -> tokens, mask), (video batch -> tokens, mask) of a head reading ``tokens``:
    "contextual", "projected" (:func:`video_side`) or "labels" (:class:`LabelTokens`; DigitClips only,
    ``data`` the ``Prepared`` whose ``attributes.json`` and training videos it reads)."""
    if tokens == "labels":
        specs = read_attributes(data.root)["specs"]
        train_ids = data.train_eval_set().videos.video_ids
        return (lambda b: text_side(dual, b)), LabelTokens(dual, specs, train_ids)
    return (lambda b: text_side(dual, b)), (lambda b: video_side(dual, b, tokens))


def pair_logits(
    head: MatchingHead,
    text: Tensor,
    text_mask: Tensor,
    video: Tensor,
    video_mask: Tensor,
    ti: Tensor,
    vi: Tensor,
    chunk: int = 1024,
    dual: Tensor | None = None,
) -> Tensor:
    """Logits of the pairs (text ti[p], video vi[p]): tokens (N_t, L, D), (N_v, M, D); ti, vi (P,) -> (P,).
    dual: (P,) the pairs' dual similarities (a residual head needs them)."""
    out = [
        head(
            text[ti[s : s + chunk]],
            text_mask[ti[s : s + chunk]],
            video[vi[s : s + chunk]],
            video_mask[vi[s : s + chunk]],
            None if dual is None else dual[s : s + chunk],
        )
        for s in range(0, len(ti), chunk)
    ]
    return torch.cat(out) if out else text.new_zeros(0)


def all_pair_logits(
    head: MatchingHead, text: Tensor, text_mask: Tensor, video: Tensor, video_mask: Tensor,
    dual: Tensor | None = None,
) -> Tensor:
    """Every (text, video) pair: (B_t, L, D), (B_v, M, D) -> (B_t, B_v) logits (B_t * B_v head passes);
    dual: (B_t, B_v) dual similarities (a residual head needs them)."""
    bt, bv = text.shape[0], video.shape[0]
    ti = torch.arange(bt, device=text.device).repeat_interleave(bv)
    vi = torch.arange(bv, device=text.device).repeat(bt)
    flat = None if dual is None else dual.reshape(-1)
    return pair_logits(head, text, text_mask, video, video_mask, ti, vi, dual=flat).view(bt, bv)


def _without_positives(values: Tensor, positives: Tensor, fill: float, n: int, who: str) -> Tensor:
    """A detached float copy of ``values`` (B_t, B_v) with each row's positives ((B_t,) columns, or a
    (B_t, B_v) bool mask) set to ``fill``, after checking the shapes and that 1 <= n < B_v."""
    mask = positives.dtype == torch.bool
    shape_ok = positives.shape == (values.shape if mask else values.shape[:1])
    if values.ndim != 2 or not shape_ok or not 1 <= n < values.shape[1]:
        raise ValueError(
            f"{who}: {tuple(values.shape)}, positives {tuple(positives.shape)}, n={n}: expected (B_t, B_v), "
            "(B_t,) indices or a (B_t, B_v) mask, and 1 <= n < B_v"
        )
    out = values.detach().float().clone()
    if mask:
        return out.masked_fill_(positives, fill)
    return out.scatter_(1, positives.view(-1, 1), fill)


def mine_hard_negatives(sims: Tensor, positives: Tensor, n: int = 1) -> Tensor:
    """The n most similar non-positive columns of each row: sims (B_t, B_v), positives (B_t,) columns or a
    (B_t, B_v) bool mask -> (B_t, n)."""
    masked = _without_positives(sims, positives, float("-inf"), n, "mine_hard_negatives: sims")
    return masked.topk(n, dim=1).indices


def matching_loss(pos_logits: Tensor, neg_logits: Tensor) -> Tensor:
    """Binary cross-entropy, label 1 on the positive pairs' logits and 0 on the negatives', mean over all."""
    logits = torch.cat([pos_logits.flatten(), neg_logits.flatten()])
    labels = torch.cat([torch.ones(pos_logits.numel()), torch.zeros(neg_logits.numel())]).to(logits)
    return F.binary_cross_entropy_with_logits(logits, labels)


def sample_negatives(
    weights: Tensor, positives: Tensor, n: int = 1, generator: torch.Generator | None = None
) -> Tensor:
    """n distinct non-positive columns of each row, drawn with probability proportional to ``weights``.

    Args:
        weights: (B_t, B_v) >= 0, e.g. a softmax of the dual similarities (ALBEF), or ones (uniform).
        positives: (B_t,) the column of each row's positive, or a (B_t, B_v) bool mask of them (a video has
            several captions); positives are never drawn.
        n: draws per row, without replacement (the first is exactly proportional to the weights, the next
            proportional among the columns not drawn yet).
    Returns: (B_t, n) column indices.
    """
    w = _without_positives(weights, positives, 0.0, n, "sample_negatives: weights")
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("sample_negatives: weights must be finite and >= 0")
    short = ((w > 0).sum(1) < n).nonzero().flatten()
    if len(short):
        raise ValueError(
            f"sample_negatives: row {int(short[0])} has fewer than n={n} negatives of weight > 0"
        )
    return torch.multinomial(w, n, replacement=False, generator=generator)


def listwise_candidates(sims: Tensor, positives: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Each row's k candidates with its positive among them exactly once: the dual encoder's top-k columns
    (in its order; the positive replaces the k-th when the dual ranks it lower). sims (B, N), positives (B,)
    columns -> candidates (B, k) columns and target (B,), the positive's position in its row."""
    if sims.ndim != 2 or positives.shape != sims.shape[:1] or not 2 <= k <= sims.shape[1]:
        raise ValueError(f"listwise_candidates: sims {tuple(sims.shape)}, positives "
                         f"{tuple(positives.shape)}, k={k}: expected (B, N), (B,) columns and 2 <= k <= N")
    top = _top_k(sims, k).clone()
    missed = ~(top == positives[:, None]).any(1)
    top[missed, -1] = positives[missed]
    return top, (top == positives[:, None]).int().argmax(1)


def _top_k(sims: Tensor, k: int) -> Tensor:
    """(B, N) -> (B, k): each row's k most similar columns, in order (stable: ties keep the column order)."""
    return sims.detach().float().argsort(dim=1, descending=True, stable=True)[:, :k]


def in_top_k(sims: Tensor, positives: Tensor, k: int) -> Tensor:
    """(B,) bool: row i's positive column is among its k most similar (stable order, as
    :func:`listwise_candidates`)."""
    return (_top_k(sims, k) == positives[:, None]).any(1)


def listwise_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Softmax cross-entropy over each row's candidates, the positive (its position ``target``) the class:
    logits (B, k), target (B,) -> the mean over rows."""
    return F.cross_entropy(logits, target)


@dataclass(frozen=True)
class MatchingRecipe:
    """How the head is trained.

    negatives: "sampled" draws, per text and per video of a batch, ``n_sampled`` negatives with probability
    proportional to softmax(s / temperature) of the frozen dual similarities (ALBEF / BLIP) plus ``n_random``
    uniform ones; "hardest" takes the ``n_sampled`` most similar (the first recipe of notebook 11, kept for
    the comparison); "listwise" scores each caption's top ``n_sampled + 1`` training videos under the dual
    encoder together (:func:`listwise_candidates`, :func:`listwise_loss`; no random ones). pool:
    where negatives come from: "batch" (the other pairs of the batch, as ALBEF) or "gallery" (every training
    video for a caption, every training caption for a video: the frozen dual encoder scores the whole training
    split once, so a caption meets the near misses it will meet in a test top-k of 1,000 videos, not only
    those among 63 others). AdamW at ``lr`` for ``epochs`` epochs, cosine-decayed to zero; head of ``layers``
    x ``heads``; residual: the head's logit adds a learned multiple of the pair's dual similarity
    (:class:`MatchingHead`). tokens: what the head reads of a video (:func:`token_sides`: "contextual",
    "projected" or the true "labels"); cross: cross-attention from the words to the video tokens instead of
    one joint self-attention. joint: CLIP2TV's design (:func:`train_matching` without a checkpoint): the dual
    encoder trains from scratch with the head, ranking loss plus the listwise loss on candidates mined from
    the batch's similarities (listwise, batch pool; ``epochs`` is the dual encoder's schedule and the head
    shares its optimiser). keep_best: keep the epoch whose head alone ranks the validation queries' top 10
    best (the learning curve's R@1; with a joint recipe, the dual encoder of that epoch too) instead of the
    last. missed: a listwise caption whose positive the dual encoder's top k misses gets it in place of the
    k-th candidate ("insert") or is left out of the loss ("skip": at test time a re-ranker never sees such a
    list, and a residual head could learn that the candidate with the outlying dual score is the inserted
    positive)."""

    negatives: str = "sampled"
    pool: str = "gallery"
    n_sampled: int = 1
    n_random: int = 1
    temperature: float = 0.05
    epochs: int = 20
    lr: float = 5e-4
    layers: int = 2
    heads: int = 4
    residual: bool = False
    tokens: str = "contextual"
    cross: bool = False
    joint: bool = False
    keep_best: bool = False
    missed: str = "insert"

    def __post_init__(self) -> None:
        if self.missed not in ("insert", "skip"):
            raise ValueError(f"MatchingRecipe: missed must be 'insert' or 'skip', got {self.missed!r}")
        if self.tokens not in ("contextual", "projected", "labels"):
            raise ValueError(f"MatchingRecipe: tokens must be 'contextual', 'projected' or 'labels', got "
                             f"{self.tokens!r}")
        if self.joint and (self.negatives != "listwise" or self.pool != "batch" or self.tokens == "labels"):
            raise ValueError("MatchingRecipe: joint training takes listwise negatives from the batch "
                             "(negatives='listwise', pool='batch') and the dual encoder's own tokens")
        if self.negatives not in ("sampled", "hardest", "listwise"):
            raise ValueError(
                f"MatchingRecipe: negatives must be 'sampled' or 'hardest' (pairwise) or 'listwise', got "
                f"{self.negatives!r}"
            )
        if self.negatives == "listwise" and (self.n_random or self.n_sampled < 1):
            raise ValueError("MatchingRecipe: 'listwise' takes n_sampled >= 1 (k - 1 negatives) and no "
                             "random negatives")
        if self.n_sampled < 0 or self.n_random < 0 or self.n_sampled + self.n_random < 1:
            raise ValueError("MatchingRecipe: n_sampled, n_random >= 0 and at least one negative per side")
        if self.negatives == "hardest" and (self.n_sampled < 1 or self.n_random):
            raise ValueError("MatchingRecipe: 'hardest' takes n_sampled >= 1 and no random negatives")
        if self.pool not in ("batch", "gallery"):
            raise ValueError(f"MatchingRecipe: pool must be 'batch' or 'gallery', got {self.pool!r}")
        if self.temperature <= 0 or self.epochs < 1 or self.lr <= 0:
            raise ValueError("MatchingRecipe: temperature, lr > 0 and epochs >= 1")

    @property
    def tag(self) -> str:
        """A file-name tag naming every field: ``matching-<tag>.json`` beside the dual run's best.pt."""
        neg = {"hardest": f"hardest{self.n_sampled}", "listwise": f"listwise{self.n_sampled + 1}"}.get(
            self.negatives, f"sampled{self.n_sampled}-t{self.temperature:g}-random{self.n_random}")
        flags = {"residual": self.residual, "projected": self.tokens == "projected",
                 "labels": self.tokens == "labels", "cross": self.cross, "joint": self.joint,
                 "best": self.keep_best, "skipmissed": self.missed == "skip"}
        extra = "".join(f"-{name}" for name, on in flags.items() if on)
        return f"{neg}-{self.pool}-e{self.epochs}-lr{self.lr:g}-l{self.layers}h{self.heads}{extra}"

    def summary_path(self, run_dir: str | Path) -> Path:
        """``run_dir/matching-<tag>.json``: the summary :func:`train_matching` writes for a dual run."""
        return Path(run_dir) / f"matching-{self.tag}.json"


# the first recipe of notebook 11's table: hardest in-batch negatives, 5 epochs
FIRST_RECIPE = MatchingRecipe("hardest", "batch", n_sampled=1, n_random=0, epochs=5, lr=1e-3)
# pairwise, negatives sampled from the training gallery, residual head (notebook 11's recipe 4)
PAIRWISE = MatchingRecipe(epochs=12, residual=True)
# listwise on the frozen dual encoder's own top 10 (k = 10 at training; k and w chosen on validation), the
# epoch whose head alone ranks validation best (recipe 5)
LISTWISE = MatchingRecipe("listwise", "gallery", n_sampled=9, n_random=0, epochs=6, residual=True,
                          keep_best=True)
# the library's default (recipe 12): listwise, captions whose true video the dual top 10 misses left out,
# lr 2e-3 for 12 epochs; it beats plain T2VLAD's test R@1 at each of 3 seeds (notebook 11)
RECIPE = replace(LISTWISE, missed="skip", lr=2e-3, epochs=12)
FUSION_WEIGHTS = tuple(i / 10 for i in range(11))  # the grid of w searched on validation
KS = (5, 10, 20)


def draw_negatives(
    sims: Tensor, positives: Tensor, recipe: MatchingRecipe, generator: torch.Generator | None = None
) -> Tensor:
    """The recipe's negatives of each row: (B_t, B_v) dual similarities and the positives ((B_t,) columns, or
    a (B_t, B_v) mask) -> (B_t, n_sampled + n_random) columns."""
    if recipe.negatives == "hardest":
        return mine_hard_negatives(sims, positives, recipe.n_sampled)
    parts = []
    if recipe.n_sampled:
        probs = torch.softmax(sims.detach().float() / recipe.temperature, dim=1)
        parts.append(sample_negatives(probs, positives, recipe.n_sampled, generator))
    if recipe.n_random:
        parts.append(sample_negatives(torch.ones_like(sims, dtype=torch.float), positives, recipe.n_random,
                                      generator))
    return torch.cat(parts, 1)


@dataclass
class MatchingResult:
    """What :func:`train_matching` measured (also written to ``<out>.json``, which the tables read).

    k, weight: the depth and fusion weight chosen on validation; dual / reranked: test t2v metrics before and
    after; per_k: for every k of the grid, its own validation-chosen weight, validation and test R@1 (and test
    R@5/R@10); r1_gain: points of test R@1; curve: per epoch, the training BCE and the validation R@1 of the
    head alone (k = 10, w = 1) on the validation queries (or a fixed subset), with the dual R@1 on the same;
    seconds per query, measured in turns in one run: the dual encoder's query (encode, score the pre-encoded
    gallery, top 10) and the k head passes at every k (``rerank_seconds_by_k``); train_seconds: the head's
    training, the frozen dual encoder's forward passes included; test_ranks: each test query's 0-based
    rank of its video, "dual" and "reranked" (at the chosen k and w): for paired comparisons."""

    k: int
    weight: float
    dual: dict[str, float]
    reranked: dict[str, float]
    r1_gain: float
    per_k: dict[str, dict[str, float]]
    curve: list[dict[str, float]]
    dual_seconds_per_query: float
    rerank_seconds_per_query: float
    rerank_seconds_by_k: dict[str, float]
    train_seconds: float
    recipe: dict[str, Any]
    test_ranks: dict[str, list[float]] = field(default_factory=dict)
    path: Path | None = None
    head: MatchingHead | None = None

    @property
    def losses(self) -> list[float]:
        return [row["train_bce"] for row in self.curve]


@torch.no_grad()
def _tokens(fn, batch: Any, size: int, dev: torch.device) -> tuple[Tensor, Tensor]:
    parts = [fn(batch.index(slice(i, i + size)).to(dev)) for i in range(0, len(batch), size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


class _Scorer:
    """The head over an evaluation set's pre-computed tokens (``sides``: :func:`token_sides`):
    (query ids, gallery ids) -> logits."""

    def __init__(self, head: MatchingHead, sides, evalset, sims: Tensor, size: int, dev: torch.device):
        self.head, self.dev, self.sims = head, dev, sims  # sims: the dual (N_q, N_g) matrix
        self.text = _tokens(sides[0], evalset.texts, size, dev)
        self.video = _tokens(sides[1], evalset.videos, size, dev)

    @torch.no_grad()
    def __call__(self, q: Tensor, g: Tensor) -> Tensor:
        q, g = q.to(self.dev), g.to(self.dev)
        return pair_logits(self.head, *self.text, *self.video, q, g, dual=self.sims.to(self.dev)[q, g]).cpu()


def _t2v(metrics: dict[str, float]) -> dict[str, float]:
    return {key: v for key, v in metrics.items() if key.startswith("t2v_")}


def _new_head(dual: nn.Module, recipe: MatchingRecipe, sides) -> MatchingHead:
    vocab = len(sides[1].vocab) if recipe.tokens == "labels" else None
    return MatchingHead(dual.config.dim, recipe.heads, recipe.layers, residual=recipe.residual,
                        cross=recipe.cross, label_vocab=vocab)


def train_matching(
    cfg,
    dual_checkpoint: str | Path | None,
    recipe: MatchingRecipe = RECIPE,
    *,
    ks: tuple[int, ...] = KS,
    weights: tuple[float, ...] = FUSION_WEIGHTS,
    curve_queries: int | None = None,
    timing_rounds: int = 3,
    data=None,
    out: str | Path | None = None,
    progress: bool = False,
) -> MatchingResult:
    """Train a :class:`MatchingHead` (on a frozen dual encoder, or with it: a joint recipe), choose k and the
    fusion weight on validation, re-rank the test split with them (``rerank.py``), and time a query.

    Args:
        cfg: the TrainConfig whose data/batch size/seed to use (the dual run's; a joint recipe trains
            its model from scratch).
        dual_checkpoint: the trainer's ``best.pt`` (its own config rebuilds the dual encoder); None for a
            joint recipe (:func:`_fit_joint`).
        recipe: negatives, epochs, lr, head size, tokens, joint.
        ks, weights: the validation grid of (k, w).
        curve_queries: validation queries of the learning curve (a fixed random subset; None: all).
        data: a ``Prepared`` to reuse. out: checkpoint path (default ``matching-<recipe.tag>.pt`` beside the
            dual's, or in ``cfg``'s run directory for a joint recipe, beside the plain run it is compared
            with); its summary goes to the same name with ``.json``.
    """
    if recipe.joint != (dual_checkpoint is None):
        raise ValueError("train_matching: a joint recipe trains its own dual encoder (dual_checkpoint=None); "
                         "any other recipe re-ranks a trained one (give its best.pt)")
    seed_everything(cfg.seed)
    data = data or prepare(cfg, verbose=progress)
    if data.val is None:
        raise ValueError(f"train_matching: {cfg.run_dir()}: k and the fusion weight are chosen on the "
                         "validation split, and this config has none")
    if recipe.joint:
        dual, head, sides, curve, state, payload = _fit_joint(cfg, recipe, data, curve_queries, progress)
        home = cfg.run_dir()
    else:
        dual, head, sides, curve, state, payload = _fit_frozen(cfg, dual_checkpoint, recipe, data,
                                                               curve_queries, progress)
        home = Path(dual_checkpoint).parent
    out = Path(out) if out is not None else recipe.summary_path(home).with_suffix(".pt")
    return _choose_and_test(dual, head, sides, data, cfg, recipe, ks, weights, timing_rounds, curve.rows,
                            sum(row["epoch_seconds"] for row in state.history), out, payload)


def _fit_frozen(cfg, dual_checkpoint, recipe: MatchingRecipe, data, curve_queries, progress):
    """The head trained on the frozen dual encoder of ``dual_checkpoint``: (dual, head, sides, learning
    curve, fit state, the dual's checkpoint payload)."""
    # a fine-tuned text encoder is the model's own copy (build_model), so freezing it leaves the one inside
    # ``data`` untouched
    loaded = load_run(dual_checkpoint, data=data)
    dual = loaded.model.eval().requires_grad_(False)
    dev = next(dual.parameters()).device
    sides = token_sides(dual, recipe.tokens, data)
    head = _new_head(dual, recipe, sides).to(dev)
    steps = sum(1 for _ in data.epoch_batches(0, cfg.seed + 7, cfg.batch_size))  # per epoch
    opt, sched = _head_optimizer(head, recipe, steps)
    _, val_sims = evaluate(dual, data.val, cfg.eval_batch_size, return_sims=True)
    val_scorer = _Scorer(head, sides, data.val, val_sims, cfg.eval_batch_size, dev)
    gen = torch.Generator().manual_seed(cfg.seed + 11)
    curve = _LearningCurve(lambda: (val_scorer, val_sims), data.val.query_masks, curve_queries, gen, progress,
                           head if recipe.keep_best else None)
    batches = _pair_batches(dual, sides, data, cfg, recipe.pool, gen, dev)
    state = fit(head, opt, batches, _pair_loss(head, recipe, gen, dev), recipe.epochs,
                callbacks=[_EveryStep(sched.step), curve])
    curve.restore_best()
    return dual, head, sides, curve, state, loaded.payload


def joint_loss(dual: nn.Module, head: MatchingHead, text: TextBatch, video: VideoBatch, rank_loss: Callable,
               k: int, tokens: str = "contextual") -> tuple[Tensor, Tensor, Tensor]:
    """CLIP2TV's joint objective on one batch (caption i describes video i): the dual encoder's ranking loss
    on the (B, B) similarities plus the listwise loss of the head over each caption's top-k videos of the
    batch under those similarities (:func:`listwise_candidates`). The head reads the dual encoder's tokens
    with their gradients (so the matching loss trains the encoders too); a residual head adds the detached
    dual similarity. Returns (total, ranking, listwise)."""
    sims = dual.similarity(dual.encode_text(text), dual.encode_video(video))  # (B, B)
    rank = rank_loss(sims.float())
    diag = torch.arange(len(sims), device=sims.device)
    cands, target = listwise_candidates(sims, diag, k)
    ti, vi = diag.repeat_interleave(k), cands.flatten()
    logits = pair_logits(head, *text_side(dual, text), *video_side(dual, video, tokens), ti, vi,
                         dual=sims.detach().float()[ti, vi])
    match = listwise_loss(logits.view(cands.shape), target)
    return rank + match, rank, match


def _fit_joint(cfg, recipe: MatchingRecipe, data, curve_queries, progress):
    """A dual encoder (``cfg``'s model, from scratch) and the head trained together (:func:`joint_loss`) for
    ``recipe.epochs`` epochs with the config's optimiser and schedule, the head one more parameter group at
    ``recipe.lr``; both taken at the last epoch (or, with ``keep_best``, at the best one). Returns what
    :func:`_fit_frozen` does, the payload built from the trained dual encoder."""
    seed_everything(cfg.seed)
    dev = get_device(cfg.device)
    dual = build_model(cfg, data).to(dev)
    sides = token_sides(dual, recipe.tokens, data)
    head = _new_head(dual, recipe, sides).to(dev)
    opt, rank_loss = optimizer_and_loss(dual, cfg, [{"params": list(head.parameters()), "lr": recipe.lr}])
    sched = make_scheduler(opt, cfg.optim.decay, cfg.optim.decay_every)
    both = nn.ModuleDict({"dual": dual, "head": head})
    k = recipe.n_sampled + 1

    def step_loss(batch) -> Tensor:
        return joint_loss(dual, head, batch[0].to(dev), batch[1].to(dev), rank_loss, k, recipe.tokens)[0]

    def current():  # the validation scorer of the current dual encoder and head
        with eval_mode(both):
            _, sims = evaluate(dual, data.val, cfg.eval_batch_size, return_sims=True)
            return _Scorer(head, sides, data.val, sims, cfg.eval_batch_size, dev), sims

    gen = torch.Generator().manual_seed(cfg.seed + 11)
    curve = _LearningCurve(current, data.val.query_masks, curve_queries, gen, progress,
                           both if recipe.keep_best else None)
    state = fit(both, opt, lambda e: data.epoch_batches(e, cfg.seed, cfg.batch_size), step_loss,
                recipe.epochs, scheduler=sched, grad_clip=cfg.optim.grad_clip, callbacks=[curve])
    curve.restore_best()
    dual.eval().requires_grad_(False)
    return dual, head, sides, curve, state, {"config": cfg.to_dict(), "model": dual.state_dict()}


def _choose_and_test(dual, head, sides, data, cfg, recipe, ks, weights, timing_rounds, curve_rows,
                     train_seconds, out: Path, dual_payload) -> MatchingResult:
    """k and w chosen on validation (every query), the test split re-ranked with them, a query timed; the
    head's checkpoint and summary written (:func:`_write`)."""
    head.eval()
    size, dev = cfg.eval_batch_size, next(head.parameters()).device
    _, val_sims = evaluate(dual, data.val, size, return_sims=True)
    val_scorer = _Scorer(head, sides, data.val, val_sims, size, dev)
    k_max = min(max(ks), val_sims.shape[1])
    val_order, val_logits = top_candidates(val_sims, val_scorer, k_max)
    choice = select_rerank(val_sims, val_order, val_logits, data.val.query_masks, ks, weights)
    per_k_choice = {k: select_rerank(val_sims, val_order, val_logits, data.val.query_masks, [k], weights)
                    for k in ks}
    dual_metrics, test_sims = evaluate(dual, data.test, size, return_sims=True)
    test_scorer = _Scorer(head, sides, data.test, test_sims, size, dev)
    test_order, test_logits = top_candidates(test_sims, test_scorer, min(k_max, test_sims.shape[1]))
    rerank_test = _test_metrics(test_sims, test_order, test_logits, data.test.query_masks)
    reranked = rerank_test(choice.k, choice.weight)
    per_k = {}
    for k, c in per_k_choice.items():
        m = rerank_test(k, c.weight)
        per_k[str(k)] = {"weight": c.weight, "val_R1": c.r1, **{f"test_{key}": m[key] for key in
                                                                ("t2v_R1", "t2v_R5", "t2v_R10")}}
    median = _seconds_per_query(dual, data.test, test_scorer, test_order, ks, size, timing_rounds)
    ranks = test_ranks(test_sims, test_order, test_logits, data.test.query_masks, choice.k, choice.weight)
    result = MatchingResult(
        k=choice.k, weight=choice.weight, dual=_t2v(dual_metrics), reranked=reranked,
        r1_gain=reranked["t2v_R1"] - dual_metrics["t2v_R1"], per_k=per_k, curve=curve_rows,
        dual_seconds_per_query=median["dual"], rerank_seconds_per_query=median[str(choice.k)],
        rerank_seconds_by_k={k: median[k] for k in map(str, ks)}, train_seconds=train_seconds,
        recipe=asdict(recipe), test_ranks=ranks, path=out, head=head,
    )
    _write(result, choice, dual_payload)
    return result


def _head_optimizer(head: MatchingHead, recipe: MatchingRecipe, steps_per_epoch: int):
    """AdamW at ``recipe.lr`` (weight decay 1e-4) and its cosine decay to zero over the run, stepped per
    step. The residual's one scalar scale moves at 20x the lr (Adam steps are ~lr in size: at 5e-4 it
    could move by only ~0.3 in a whole run), without weight decay."""
    scale = [p for n, p in head.named_parameters() if n == "dual_scale"]
    rest = [p for n, p in head.named_parameters() if n != "dual_scale"]
    opt = torch.optim.AdamW([{"params": rest}, {"params": scale, "lr": 20 * recipe.lr, "weight_decay": 0.0}],
                            lr=recipe.lr, weight_decay=1e-4)
    steps = recipe.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps))
    )
    return opt, sched


class _EveryStep(Callback):
    """Call ``fn()`` after every optimiser step (a per-step learning-rate schedule)."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn

    def on_step_end(self, state: FitState) -> None:
        self.fn()


class _LearningCurve(Callback):
    """After every epoch: the training loss (key ``train_bce``; the cross-entropy for a listwise recipe, the
    total for a joint one) and the validation R@1 of the head alone (k = 10, w = 1) on a fixed random subset
    of validation queries (drawn with ``gen``), beside the dual R@1 on the same subset: ``rows``, printed when
    ``progress``. ``current()`` gives the validation scorer and dual similarities (new ones each epoch when
    the dual encoder trains). ``keep``: a module whose weights at the epoch of the best head-alone R@1 are
    kept (:meth:`restore_best` puts them back; the first epoch wins a tie)."""

    def __init__(self, current: Callable[[], tuple[_Scorer, Tensor]], query_masks: Tensor,
                 queries: int | None, gen: torch.Generator, progress: bool, keep: nn.Module | None = None):
        truth = query_masks.nonzero()[:, 0]  # the video of each validation caption
        self.subset = torch.randperm(len(truth), generator=gen)[:queries].sort().values
        self.truth = truth[self.subset]
        self.current, self.progress, self.rows = current, progress, []
        self.keep, self.best, self.best_state = keep, None, None

    def on_epoch_end(self, state: FitState) -> None:
        scorer, sims = self.current()
        sims = sims[self.subset]
        order = sims.argsort(dim=1, descending=True, stable=True)
        k = min(10, sims.shape[1])
        with eval_mode(scorer.head):
            logits = scorer(self.subset.repeat_interleave(k), order[:, :k].flatten())
        _, reranked = rerank_scored(sims, order, logits.view(-1, k), k, 1.0)
        head_r1 = 100.0 * float((reranked[:, 0] == self.truth).float().mean())
        dual_r1 = 100.0 * float((order[:, 0] == self.truth).float().mean())
        self.rows.append({"epoch": state.epoch + 1, "train_bce": state.row["train_loss"],
                          "val_head_R1": head_r1, "val_dual_R1": dual_r1})
        if self.keep is not None and (self.best is None or head_r1 > self.best[1]):
            self.best = (state.epoch + 1, head_r1)
            self.best_state = {k: v.detach().clone() for k, v in self.keep.state_dict().items()}
        if self.progress:
            print(f"matching epoch {state.epoch + 1}/{state.epochs}  loss {state.row['train_loss']:.4f}  val "
                  f"R@1 head alone {head_r1:.1f} (dual {dual_r1:.1f})")

    def restore_best(self) -> None:
        """Load the kept weights (nothing to do without ``keep``) and mark that epoch's row ``kept``."""
        if self.keep is None or self.best_state is None:
            return
        self.keep.load_state_dict(self.best_state)
        self.rows[self.best[0] - 1]["kept"] = True


def _pair_batches(dual: nn.Module, sides, data, cfg, pool: str, gen: torch.Generator, dev: torch.device):
    """epoch -> the head's training batches. Each: the four token tables (text tokens and mask, video tokens
    and mask, from ``sides``) and their dual similarities, the positive pairs (caption c[i], video v[i]), the
    caption -> video similarities of each c[i] and the video -> caption ones of each v[i], with their
    positives. pool "batch": the tables of each batch of the epoch (B x B); "gallery": the frozen dual encoder
    scores the whole training split once, and each step takes B videos (drawn with ``gen``) and one caption
    each."""
    if pool == "batch":
        def batch_pool(epoch: int):
            for text, video in data.epoch_batches(epoch, cfg.seed + 7, cfg.batch_size):
                text, video = text.to(dev), video.to(dev)
                with torch.no_grad():
                    (tt, tm), (vt, vm) = sides[0](text), sides[1](video)
                    sims = dual.similarity(dual.encode_text(text), dual.encode_video(video)).cpu()  # (B, B)
                diag = torch.arange(len(sims))
                yield (tt, tm, vt, vm), sims, diag, diag, sims, diag, sims.T, diag
        return batch_pool
    split, size = data.train_eval_set(), cfg.eval_batch_size
    t_table = _tokens(sides[0], split.texts, size, dev)
    v_table = _tokens(sides[1], split.videos, size, dev)
    _, sims = evaluate(dual, split, size, return_sims=True)  # (N_captions, N_videos)
    caption_video = split.query_masks.nonzero()[:, 0]  # the video of each training caption

    def gallery_pool(epoch: int):
        order = torch.randperm(len(data.train), generator=gen)
        for start in range(0, len(order) - cfg.batch_size + 1, cfg.batch_size):
            v = order[start : start + cfg.batch_size]
            c = torch.tensor([caps[int(torch.randint(len(caps), (), generator=gen))]
                              for caps in (data.train.video_captions[i] for i in v.tolist())])
            own = caption_video[None, :] == v[:, None]  # (B, N_captions): each video's own captions
            yield (*t_table, *v_table), sims, c, v, sims[c], v, sims[:, v].T, own
    return gallery_pool


def _pair_loss(head: MatchingHead, recipe: MatchingRecipe, gen: torch.Generator, dev: torch.device):
    """batch (of :func:`_pair_batches`) -> the BCE of its positive pairs and the recipe's negatives of each
    caption (videos) and each video (captions); or, listwise, the cross-entropy of each caption's k
    candidate videos."""

    def step_loss(batch) -> Tensor:
        (tt, tm, vt, vm), table, c, v, t2v, t2v_pos, v2t, v2t_pos = batch
        if recipe.negatives == "listwise":
            cands, target = listwise_candidates(t2v, t2v_pos, recipe.n_sampled + 1)  # (B, k), (B,)
            if recipe.missed == "skip":  # only the lists the dual encoder's own top k holds the positive in
                kept = in_top_k(t2v, t2v_pos, recipe.n_sampled + 1)
                if not kept.any():
                    return head.out.bias.sum() * 0.0  # nothing to learn from this batch
                c, cands, target = c[kept], cands[kept], target[kept]
            ti, vi = c.repeat_interleave(cands.shape[1]).to(dev), cands.flatten().to(dev)
            logits = pair_logits(head, tt, tm, vt, vm, ti, vi, dual=table.to(dev)[ti, vi])
            return listwise_loss(logits.view(cands.shape), target.to(dev))
        neg_v = draw_negatives(t2v, t2v_pos, recipe, gen)  # (B, n): videos for each caption
        neg_t = draw_negatives(v2t, v2t_pos, recipe, gen)  # (B, n): captions for each video
        n, b = neg_v.shape[1], len(c)
        ti = torch.cat([c, c.repeat_interleave(n), neg_t.flatten()]).to(dev)
        vi = torch.cat([v, neg_v.flatten(), v.repeat_interleave(n)]).to(dev)
        logits = pair_logits(head, tt, tm, vt, vm, ti, vi, dual=table.to(dev)[ti, vi])
        return matching_loss(logits[:b], logits[b:])

    return step_loss


def _test_metrics(sims: Tensor, order: Tensor, logits: Tensor, query_masks: Tensor):
    """(k, w) -> the t2v metrics of the test split re-ranked at depth k with fusion weight w."""

    def metrics(k: int, w: float) -> dict[str, float]:
        scores, _ = rerank_scored(sims, order, logits, k, w)
        return _t2v(retrieval_metrics(scores, query_masks))

    return metrics


def test_ranks(sims: Tensor, order: Tensor, logits: Tensor, query_masks: Tensor, k: int, weight: float
               ) -> dict[str, list[float]]:
    """Each query's 0-based (tie-averaged) rank of its video: "dual" under ``sims`` and "reranked" at depth k
    and fusion weight w (``order``, ``logits``: :func:`rerank.top_candidates`)."""
    scores, _ = rerank_scored(sims, order, logits, k, weight)
    return {"dual": t2v_ranks(sims, query_masks).tolist(),
            "reranked": t2v_ranks(scores, query_masks).tolist()}


def load_matching(ckpt: dict[str, Any], path: str | Path, data) -> tuple[nn.Module, MatchingHead]:
    """The dual encoder (built for ``data``) and the head of a loaded ``matching-<tag>.pt`` payload (``path``
    names it in errors)."""
    cfg = from_dict(ckpt["dual_config"])
    dual = build_model(cfg, data)  # a fine-tuned text encoder: the dual encoder gets its own copy
    load_weights(dual, ckpt["dual"], path, cfg)
    head = MatchingHead(**ckpt["head_config"])
    head.load_state_dict(ckpt["head"])
    return dual, head


def rerank_test_ranks(path: str | Path, data) -> dict[str, list[float]]:
    """:func:`test_ranks` of a saved re-ranker (``matching-<tag>.pt``, with its dual encoder) on ``data``'s
    test split at its chosen k and w: what a summary written before they were kept is missing."""
    ckpt = load_checkpoint(path)
    dual, head = load_matching(ckpt, path, data)
    dual.eval().requires_grad_(False)
    head.eval()
    sides = token_sides(dual, ckpt["recipe"].get("tokens", "contextual"), data)
    size = from_dict(ckpt["dual_config"]).eval_batch_size
    _, sims = evaluate(dual, data.test, size, return_sims=True)
    scorer = _Scorer(head, sides, data.test, sims, size, torch.device("cpu"))
    order, logits = top_candidates(sims, scorer, ckpt["k"])
    return test_ranks(sims, order, logits, data.test.query_masks, ckpt["k"], ckpt["weight"])


def _seconds_per_query(dual: nn.Module, test, scorer: _Scorer, order: Tensor, ks: tuple[int, ...], size: int,
                       rounds: int) -> dict[str, float]:
    """Median seconds per query, in turns: "dual", the dual query against a pre-encoded gallery (encode,
    score, top 10), and str(k), the k head passes of each k of ``ks``."""
    n_q = len(test.texts)
    gallery = encode_videos(dual, test.videos, size)

    def head_passes(k: int):
        kk = min(k, order.shape[1])
        return lambda: scorer(torch.arange(n_q).repeat_interleave(kk), order[:, :kk].flatten())

    with torch.no_grad():
        calls = {"dual": lambda: query_topk(dual, test.texts, gallery, size)}
        median = time_in_turns({**calls, **{str(k): head_passes(k) for k in ks}}, rounds)
    return {name: t / n_q for name, t in median.items()}


def _write(result: MatchingResult, choice, dual_payload: dict[str, Any]) -> None:
    """The head's checkpoint at ``result.path`` (with the dual weights and config: a distillation teacher
    loads it alone) and its summary beside it (``.json``: what the tables read)."""
    head, ckpt = result.head, dual_payload
    save_checkpoint(
        result.path,
        {
            "kind": "matching",
            "model": head.state_dict(),
            "head": head.state_dict(),
            "head_config": head.config,
            "config": ckpt["config"],
            "dual_config": ckpt["config"],
            "dual": ckpt["model"],
            "k": choice.k,
            "weight": choice.weight,
            "recipe": result.recipe,
            "dual_metrics": result.dual,
            "reranked_metrics": result.reranked,
        },
    )
    summary = {f.name: getattr(result, f.name) for f in fields(result) if f.name not in ("path", "head")}
    summary["head_params"] = sum(p.numel() for p in head.parameters())
    summary["validation_grid"] = choice.grid
    atomic_write_text(result.path.with_suffix(".json"), json.dumps(summary, indent=2))
