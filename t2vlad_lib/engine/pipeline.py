"""From a config to ready-to-train data: dataset on disk -> validated splits -> text encoder and
cached token states -> training batches and evaluation sets.

    data = prepare(load_config("tutorial"))
    text, video = data.train_batch(torch.arange(64), generator)
    metrics = evaluate(model, data.test)

DigitClips is generated on first use (``ensure_digitclips``); a released-format directory (MSRVTT,
ActivityNet, LSMDC) is read with its layout. With a frozen text encoder every caption of every split is
encoded once and its token states cached on disk (``cache_dir()/text-states``); with a fine-tuned
encoder the batches carry token ids and each model holds its own copy of the encoder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.batch import TextBatch, VideoBatch
from ..core.utils import cache_dir, is_fast
from ..data import RetrievalDataset, ensure_digitclips, load_split
from ..data.digitclips import dataset_dir
from ..data.released import SplitData, get_layout
from ..model.text import TextEncoder, encode_captions_cached
from .config import ConfigError, TrainConfig
from .evaluate import EvalSet

__all__ = ["Prepared", "prepare", "dataset_root", "data_identity", "holdout", "corrupt_captions"]


def dataset_root(cfg: TrainConfig) -> Path:
    """The dataset directory of a config (generating DigitClips if needed).

    ``${T2VLAD_DATA}`` in the path defaults to ``./data`` when the variable is not set.
    """
    if cfg.data.dataset == "digitclips":
        return ensure_digitclips(fast=_fast(cfg), max_shots=cfg.data.shots)
    return _released_dir(cfg)


def _fast(cfg: TrainConfig) -> bool:
    return is_fast() if cfg.data.fast is None else cfg.data.fast


def _released_dir(cfg: TrainConfig) -> Path:
    name = cfg.data.dataset
    path = Path(os.path.expandvars(name.replace("${T2VLAD_DATA}", os.environ.get("T2VLAD_DATA", "data"))))
    if not path.is_dir():
        raise FileNotFoundError(
            f"dataset directory {path} not found; put the released features there (README: 'Real features') "
            "or set T2VLAD_DATA"
        )
    return path


def data_identity(cfg: TrainConfig) -> str:
    """Which data a config trains on, from the config alone (nothing is generated or loaded): the name of
    its DigitClips directory, which carries the generator version, the size and the shots
    (``digitclips-v3-full-seed0``), or a released directory's name, its layout and a digest of its
    ``dataset.json`` and split lists (``MSRVTT [msrvtt-1k-a] 3f2a9c01d4e7``). Every checkpoint records
    it (``Prepared.identity``) and it is part of a run's identity (``runs.RunIdentity``)."""
    if cfg.data.dataset == "digitclips":
        return dataset_dir(_fast(cfg), 0, ".", cfg.data.shots).name  # the name ensure_digitclips uses
    root = _released_dir(cfg)
    layout = get_layout(root, cfg.data.layout)
    digest = hashlib.sha256()
    for name in ("dataset.json", *sorted(set(layout.splits.values()))):
        path = root / name
        digest.update(f"{name}\0".encode() + (path.read_bytes() if path.is_file() else b"<absent>") + b"\0")
    return f"{root.name} [{layout.name}] {digest.hexdigest()[:12]}"


def holdout(split: SplitData, n: int) -> tuple[SplitData, SplitData]:
    """Split the last ``n`` videos of a (train) split off as a validation split (MSRVTT 1k-A has none).
    Holding out more than a fifth of the training list is allowed, with a warning: it is rarely meant (the
    ``msrvtt-1ka`` profile's 500 of 9,000 videos would be 500 of a small copy's 600)."""
    if not 0 < n < len(split):
        raise ValueError(f"val_holdout={n}: expected 0 < n < {len(split)} training videos")
    if 5 * n > len(split):
        warnings.warn(
            f"data.val_holdout={n} holds out {n} of the {len(split)} training videos ({n / len(split):.0%}) "
            "for validation, more than a fifth: set a smaller data.val_holdout to keep them for training",
            stacklevel=2,
        )

    def part(sl: slice, name: str) -> SplitData:
        return dataclasses.replace(
            split,
            split=name,
            video_ids=split.video_ids[sl],
            captions=split.captions[sl],
            features={e: v[sl] for e, v in split.features.items()},
            caption_index=None if split.caption_index is None else split.caption_index[sl],
        )

    return part(slice(0, len(split) - n), "train"), part(slice(len(split) - n, None), "val")


def corrupt_captions(
    video_captions: list[list[int]], fraction: float, seed: int = 0
) -> tuple[list[list[int]], list[tuple[int, int]]]:
    """Swap ``round(fraction * N)`` of the N caption slots with captions of other videos (noisy labels).

    The chosen slots are grouped by video in a random video order and each takes the caption of the slot
    g places further round the cycle (g = the most slots chosen in one video), so every chosen slot gets a
    caption of *another* video and the multiset of captions is unchanged. Deterministic in ``seed``.

    Args:
        video_captions: per video, its caption ids (``RetrievalDataset.video_captions``).
    Returns:
        the new per-video lists and the (video, slot) positions that were changed.
    Raises:
        ValueError: fraction outside [0, 1), or no derangement across videos exists for this choice.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"caption_noise: expected a fraction in [0, 1), got {fraction}")
    slots = [(v, j) for v, caps in enumerate(video_captions) for j in range(len(caps))]
    n = round(fraction * len(slots))
    out = [list(caps) for caps in video_captions]
    if n == 0:
        return out, []
    gen = torch.Generator().manual_seed(seed * 7919 + 17)
    chosen = [slots[i] for i in torch.randperm(len(slots), generator=gen)[:n].tolist()]
    rank = torch.randperm(len(video_captions), generator=gen).tolist()  # random video order
    chosen.sort(key=lambda s: (rank[s[0]], s[1]))
    g = max(sum(1 for s in chosen if s[0] == v) for v in {s[0] for s in chosen})
    if 2 * g > n:
        raise ValueError(
            f"caption_noise={fraction}: {n} chosen captions, {g} of them from one video; no swap with "
            "other videos exists (use a larger fraction or more videos)"
        )
    for i, (v, j) in enumerate(chosen):
        src_v, src_j = chosen[(i + g) % n]
        out[v][j] = video_captions[src_v][src_j]
    return out, chosen


@dataclass
class Prepared:
    """Everything a run needs from the data side.

    train: the training dataset (one random caption per video per epoch); val / test: evaluation sets
    (all videos encoded once, captions by protocol); expert_dims: expert -> D_e; text_dim: H;
    text_encoder: the pretrained encoder when it runs inside the model (fine-tuned, or frozen without a
    cache), else None (states are cached); ``runs.build_model`` gives each model a copy, so this one
    keeps its pretrained weights;
    query_encoder: the frozen encoder that turns new queries into states (search, notebooks);
    data_id: :func:`data_identity` of the config it was prepared for.
    """

    root: Path
    train: RetrievalDataset
    val: EvalSet | None
    test: EvalSet
    expert_dims: dict[str, int]
    text_dim: int
    text_encoder: TextEncoder | None
    query_encoder: TextEncoder | None
    caption_len: int
    data_id: str = ""

    @property
    def num_train(self) -> int:
        return len(self.train)

    def train_batch(self, indices: torch.Tensor, generator: torch.Generator) -> tuple[TextBatch, VideoBatch]:
        """B training videos and one caption each, drawn with ``generator`` (reproducible on resume)."""
        idx = indices.tolist()
        caps = [
            c[int(torch.randint(len(c), (), generator=generator))]
            for c in (self.train.video_captions[i] for i in idx)
        ]
        return self.train.text_batch(caps), self.train.video_batch(idx)

    def train_eval_set(self) -> EvalSet:
        """Every training video and every training caption as an :class:`EvalSet` (caption ids in order),
        e.g. to score the whole training gallery with a frozen model."""
        return _eval_set(self.train, "train")

    def identity(self) -> dict[str, str]:
        """What a checkpoint records of its data: ``id``, the data's identity (:func:`data_identity`), the
        directory's name and its data set name (checkpoints written before ``id`` have the last two)."""
        import json

        meta = self.root / "dataset.json"
        name = json.loads(meta.read_text()).get("name", self.root.name) if meta.exists() else self.root.name
        return {"id": self.data_id, "dir": self.root.name, "name": str(name)}

    def epoch_batches(self, epoch: int, seed: int, batch_size: int, rank: int = 0, world: int = 1):
        """The training batches of one epoch: (text, video) pairs of ``batch_size`` videos in an order drawn
        from a generator seeded by (seed, epoch) (so a resumed run replays the same data); with ``world``
        > 1 processes, rank ``rank``'s share. The last incomplete batch is dropped."""
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(self.num_train, generator=gen)
        if world > 1:
            per_rank = len(order) // world
            order = order[rank * per_rank : (rank + 1) * per_rank]
        for start in range(0, len(order) - batch_size + 1 if len(order) >= batch_size else 1, batch_size):
            yield self.train_batch(order[start : start + batch_size], gen)

    @torch.no_grad()
    def encode_queries(self, captions: list[str]) -> TextBatch:
        """New caption strings -> a TextBatch the model accepts (with states when the encoder is frozen)."""
        encoder = self.query_encoder or self.text_encoder
        assert encoder is not None
        batch = encoder.tokenize(captions, self.caption_len)
        if self.query_encoder is not None:
            batch.states, _ = self.query_encoder(batch.input_ids, batch.attention_mask)
        return batch


class _StateTable:
    """Unique token states (U, L, H) plus a row per caption, looked up by the dataset's caption ids."""

    def __init__(self, states: torch.Tensor, inverse: torch.Tensor):
        self.states, self.inverse = states, inverse

    def __getitem__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.states[self.inverse[ids]].float()

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.inverse), *self.states.shape[1:])

    @property
    def ndim(self) -> int:
        return 3


def _eval_set(ds: RetrievalDataset, name: str) -> EvalSet:
    all_videos = list(range(len(ds)))
    width = max(len(c) for c in ds.video_captions)
    masks = torch.zeros(len(ds), width, dtype=torch.bool)
    for i, caps in enumerate(ds.video_captions):
        masks[i, : len(caps)] = True
    flat = [c for caps in ds.video_captions for c in caps]
    return EvalSet(ds.video_batch(all_videos), ds.text_batch(flat), masks, name)


def prepare(cfg: TrainConfig, verbose: bool = True) -> Prepared:
    """Load the splits of a config, set up the text side, and build the train / val / test sets."""
    root = dataset_root(cfg)
    layout = get_layout(root, cfg.data.layout)
    experts = cfg.data.experts

    def load(split: str) -> SplitData:
        return load_split(root, split, layout, experts=experts, verbose=verbose)

    # model selection needs a validation split: the layout's own list, or training videos held out
    has_val, n_holdout = "val" in layout.splits, cfg.data.val_holdout
    where = f"layout {layout.name!r} of {root}"
    if has_val and n_holdout:
        raise ConfigError([f"data.val_holdout: got {n_holdout}; expected 0: {where} has a validation list"])
    if not has_val and not n_holdout:
        raise ConfigError(
            [
                f"data.val_holdout: got 0, but {where} has no validation list; "
                "set data.val_holdout=N to hold out N training videos for model selection"
            ]
        )
    train_split = load("train")
    val_split = load("val") if has_val else None
    if n_holdout:
        train_split, val_split = holdout(train_split, n_holdout)
    test_split = load("test")
    protocol = {"fixed": "index", "all": "all"}.get(cfg.data.test_protocol)
    if protocol is None:
        raise ValueError(f"data.test_protocol={cfg.data.test_protocol!r}; valid: 'fixed', 'all'")
    encoder = TextEncoder(
        cfg.text.model, freeze=cfg.text.freeze, finetune_top_layers=cfg.text.finetune_top_layers
    )
    kw = dict(
        max_text_tokens=cfg.data.caption_len,
        max_segments=cfg.data.max_segments or None,
        sampling=cfg.data.sampling,
        verbose=verbose,
    )
    train = RetrievalDataset(train_split, encoder.tokenizer, train=True, **kw)
    if cfg.data.caption_noise:  # noisy-label experiments: training captions only, val / test stay clean
        noise = cfg.data.caption_noise
        train.video_captions, swapped = corrupt_captions(train.video_captions, noise, cfg.seed)
        if verbose:
            print(f"{root.name}/train: caption_noise={noise}: {len(swapped)} captions swapped")
    val = RetrievalDataset(val_split, encoder.tokenizer, **kw) if val_split is not None else None
    test = RetrievalDataset(test_split, encoder.tokenizer, protocol=protocol, **kw)
    # every split pads each expert to the same T_e as the training set
    for ds in (val, test):
        if ds is not None:
            ds.max_segments = train.max_segments
    cached = cfg.text.mode == "cached"
    if cached:
        sets = [d for d in (train, val, test) if d is not None]
        captions = [c for d in sets for c in d.captions]
        tag = hashlib.sha1(f"{root.resolve()}|{encoder.name}|{cfg.data.caption_len}".encode()).hexdigest()[
            :12
        ]
        # protocol + caption hash in the name: `fixed` and `all` (or edited captions) keep separate files
        caps = hashlib.sha1("\n".join(captions).encode()).hexdigest()[:8]
        path = Path(cache_dir()) / "text-states" / f"{root.name}-{cfg.data.test_protocol}-{tag}-{caps}.pt"
        states, _, inverse = encode_captions_cached(
            encoder, None, captions, cfg.data.caption_len, path, progress=verbose, return_inverse=True
        )
        start = 0
        for d in sets:
            d.text_states = _StateTable(states, inverse[start : start + len(d.captions)])
            start += len(d.captions)
    return Prepared(
        root=root,
        train=train,
        val=_eval_set(val, "val") if val is not None else None,
        test=_eval_set(test, "test"),
        expert_dims=dict(train_split.dims),
        text_dim=encoder.hidden_size,
        text_encoder=None if cached else encoder,
        query_encoder=encoder if cached else None,
        caption_len=cfg.data.caption_len,
        data_id=data_identity(cfg),
    )
