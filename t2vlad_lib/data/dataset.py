"""A torch Dataset over one validated split, and the collate that builds ``VideoBatch`` + ``TextBatch``.

Video side: each expert is padded (or cut) to a fixed length T_e, with a token mask (B, T_e) and an
availability flag (B,) (False where the expert is NaN in the pickles; its features are zeros and its
mask all False). Text side: every caption string used by the split is in one flat list
``dataset.captions`` (N), tokenised once into ``input_ids``/``attention_mask`` (N, L);
``dataset.video_captions[i]`` lists the caption indices of video i. A frozen text encoder can be run
once over the flat list and its token states (N, L, H) handed to ``set_text_states``: the collate then
fills ``TextBatch.states`` by caption index.

Training mode draws one random caption per video (torch's global RNG, so ``seed_everything`` fixes it);
evaluation mode enumerates all captions (C = the most any video has), with a query mask (B, C).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core.batch import TextBatch, VideoBatch
from .released import SplitData

__all__ = ["MAX_SEGMENTS", "RetrievalBatch", "RetrievalDataset", "WordTokenizer"]

# T_e when max_segments does not say: the longest video of the split, but at most this many (one video of
# 24,414 tokens would pad every batch to that length; mmt.MMTVideoEncoder's time table has 128 rows too)
MAX_SEGMENTS = 128


@dataclass
class RetrievalBatch:
    """What the collate returns.

    Attributes:
        video: features/token_mask/available per expert for B videos.
        text: B * C captions, caption c of video b at row b * C + c (C = 1 in training mode). Rows of
            missing captions repeat the video's first caption and are masked out by ``query_mask``.
        query_mask: (B, C) bool, True where the caption exists.
        caption_ids: (B, C) long index into ``dataset.captions`` (-1 where missing).
    """

    video: VideoBatch
    text: TextBatch
    query_mask: torch.Tensor
    caption_ids: torch.Tensor

    def to(self, device: torch.device | str) -> RetrievalBatch:
        return RetrievalBatch(self.video.to(device), self.text.to(device), self.query_mask.to(device),
                              self.caption_ids.to(device))


class WordTokenizer:
    """Fallback whitespace tokenizer with a HF-like call: [CLS] words [SEP] [PAD]..., ids from a vocab.

    Ids: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, then the words of ``texts`` in first-seen order.
    """

    def __init__(self, texts: list[str]) -> None:
        self.vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
        for t in texts:
            for w in t.lower().split():
                self.vocab.setdefault(w, len(self.vocab))

    def __call__(self, texts: list[str], max_length: int = 24, **_) -> dict[str, torch.Tensor]:
        """texts (N) -> input_ids and attention_mask, both (N, max_length) long."""
        ids = torch.zeros(len(texts), max_length, dtype=torch.long)
        for i, t in enumerate(texts):
            toks = [2] + [self.vocab.get(w, 1) for w in t.lower().split()][: max_length - 2] + [3]
            ids[i, : len(toks)] = torch.tensor(toks)
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def _check_lengths(data: SplitData, max_text_tokens, max_segments) -> None:
    """L >= 3 ([CLS] word [SEP]) and every T_e >= 1: a zero or negative length would drop data silently."""
    where = f"{data.name}/{data.split}"
    if max_text_tokens and (not _is_int(max_text_tokens) or max_text_tokens < 3):  # None / 0: the layout's
        raise ValueError(f"{where}: max_text_tokens={max_text_tokens!r}; expected an integer >= 3 "
                         "(L with [CLS] and [SEP])")
    lengths = max_segments if isinstance(max_segments, dict) else {"every expert": max_segments}
    bad = {e: t for e, t in lengths.items() if t is not None and (not _is_int(t) or t < 1)}
    if bad:
        raise ValueError(f"{where}: max_segments {bad}; expected integers T_e >= 1")


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


class RetrievalDataset(Dataset):
    """Videos of one split with their captions; ``collate`` makes a ``RetrievalBatch``.

    Args:
        data: a split from ``load_split``.
        tokenizer: a HF tokenizer (or ``WordTokenizer``); called once on all captions.
        train: one random caption per item (True) or all of them (False).
        protocol: ``"all"`` captions, or ``"index"``: only the caption named by the split's caption
            index (MSRVTT 1k-A / DigitClips test).
        max_text_tokens: L, including [CLS]/[SEP] (default: the layout's, e.g. 24 DigitClips, 37 MSRVTT).
        max_segments: T_e per expert (int for all, dict per expert); default the longest in the split, at
            most ``MAX_SEGMENTS`` (a warning names the videos that are longer).
        sampling: ``"uniform"`` (keep T_e evenly spaced segments) or ``"truncate"`` (keep the first T_e).
        experts: a subset of the split's experts.
    Raises:
        ValueError: an unknown protocol or sampling, protocol ``"index"`` without a caption index, experts
            the split did not load, L < 3 or a T_e < 1 (which would silently drop tokens or segments).
    """

    def __init__(self, data: SplitData, tokenizer=None, *, train: bool = False, protocol: str = "all",
                 max_text_tokens: int | None = None, max_segments: int | dict[str, int] | None = None,
                 sampling: str = "uniform", experts: list[str] | None = None, verbose: bool = True) -> None:
        if protocol not in ("all", "index"):
            raise ValueError(f"protocol {protocol!r}; expected 'all' or 'index'")
        if protocol == "index" and data.caption_index is None:
            raise ValueError(f"{data.root}: split {data.split!r} of {data.name!r} has no caption index file; "
                             "expected one for protocol='index'")
        if sampling not in ("uniform", "truncate"):
            raise ValueError(f"sampling {sampling!r}; expected 'uniform' or 'truncate'")
        self.data, self.train, self.sampling = data, train, sampling
        self.experts = list(data.experts if experts is None else experts)
        unknown = [e for e in self.experts if e not in data.features]
        if unknown:
            raise ValueError(f"{data.root}: experts {unknown} were not loaded for split {data.split!r}; "
                             f"expected a subset of {data.experts}")
        _check_lengths(data, max_text_tokens, max_segments)
        self.captions: list[str] = []
        self.video_captions: list[list[int]] = []
        for i, caps in enumerate(data.captions):
            keep = [caps[data.caption_index[i]]] if protocol == "index" else caps
            self.video_captions.append(list(range(len(self.captions), len(self.captions) + len(keep))))
            self.captions += keep
        self.caption_video = torch.tensor([i for i, c in enumerate(self.video_captions) for _ in c])
        longest = {e: min(MAX_SEGMENTS, max((x.shape[0] for x in data.features[e] if x is not None),
                                             default=1)) for e in self.experts}
        given = ({e: max_segments for e in self.experts} if isinstance(max_segments, int)
                 else dict(max_segments or {}))
        self.max_segments = {e: given.get(e, longest[e]) for e in self.experts}
        for e in self.experts:
            t_max = self.max_segments[e]
            cut = [(v, x.shape[0]) for v, x in zip(data.video_ids, data.features[e], strict=True)
                   if x is not None and x.shape[0] > t_max]
            if not cut:
                continue
            message = (f"{data.name}/{data.split}: {len(cut)} videos have more than {t_max} {e} segments, "
                       f"e.g. {cut[0][0]!r} ({cut[0][1]}); {sampling} sampling keeps {t_max}")
            if e not in given:  # cut by MAX_SEGMENTS, which nobody chose: always say so
                warnings.warn(f"{message} (set data.max_segments to choose T_e)", stacklevel=2)
            elif verbose:
                print(message)
        self.max_text_tokens = max_text_tokens or data.max_text_tokens
        self.input_ids = self.attention_mask = self.text_states = None
        if tokenizer is not None:
            tok = tokenizer(self.captions, padding="max_length", truncation=True,
                            max_length=self.max_text_tokens, return_tensors="pt")
            self.input_ids = torch.as_tensor(tok["input_ids"]).long()
            self.attention_mask = torch.as_tensor(tok["attention_mask"]).long()
            full = tokenizer(self.captions[:2000], truncation=False)["input_ids"] if verbose else []
            long = sum(len(x) > self.max_text_tokens for x in full)
            if long:
                print(f"{data.name}/{data.split}: {long} of the first {len(full)} captions are longer than "
                      f"{self.max_text_tokens} tokens and are truncated")

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        caps = self.video_captions[i]
        if self.train:
            caps = [caps[int(torch.randint(len(caps), ()))]]
        return {"index": i, "caption_ids": caps}

    def set_text_states(self, states: torch.Tensor) -> None:
        """Cache token states (N, L, H) of a frozen encoder run on ``input_ids``/``attention_mask``."""
        if self.input_ids is None:
            raise ValueError("set_text_states: the dataset has no tokenizer; expected token ids to align to")
        n, length = self.input_ids.shape
        if states.ndim != 3 or tuple(states.shape[:2]) != (n, length):
            raise ValueError(f"set_text_states: states of shape {tuple(states.shape)}; "
                             f"expected ({n}, {length}, H)")
        self.text_states = states

    def _pick(self, t: int, cap: int) -> np.ndarray:
        if t <= cap:
            return np.arange(t)
        if self.sampling == "truncate":
            return np.arange(cap)
        return np.rint(np.linspace(0, t - 1, cap)).astype(int)

    def video_batch(self, indices: list[int]) -> VideoBatch:
        """VideoBatch of videos ``indices``: features (B, T_e, D_e), token_mask (B, T_e), available (B,)."""
        feats, masks, avail = {}, {}, {}
        for e in self.experts:
            t_max, dim = self.max_segments[e], self.data.dims[e]
            x = torch.zeros(len(indices), t_max, dim)
            m = torch.zeros(len(indices), t_max, dtype=torch.bool)
            for row, i in enumerate(indices):
                arr = self.data.features[e][i]
                if arr is None:
                    continue
                keep = self._pick(arr.shape[0], t_max)
                x[row, : len(keep)] = torch.from_numpy(arr[keep])
                m[row, : len(keep)] = True
            feats[e], masks[e], avail[e] = x, m, m.any(1)
        return VideoBatch(feats, masks, avail, [self.data.video_ids[i] for i in indices])

    def text_batch(self, caption_ids: list[int] | torch.Tensor) -> TextBatch:
        """TextBatch of captions ``caption_ids``: input_ids/attention_mask (N, L), states (N, L, H) if cached.
        """
        if self.input_ids is None:
            raise ValueError("text_batch: the dataset was built without a tokenizer; expected one")
        ids = torch.as_tensor(caption_ids, dtype=torch.long)
        return TextBatch(self.input_ids[ids], self.attention_mask[ids],
                         None if self.text_states is None else self.text_states[ids],
                         [self.captions[i] for i in ids.tolist()])

    def collate(self, items: list[dict]) -> RetrievalBatch:
        """items from ``__getitem__`` -> RetrievalBatch (video B; text B * C; query_mask (B, C))."""
        width = max(len(it["caption_ids"]) for it in items)
        cap = torch.full((len(items), width), -1, dtype=torch.long)
        for row, it in enumerate(items):
            cap[row, : len(it["caption_ids"])] = torch.tensor(it["caption_ids"])
        mask = cap >= 0
        filled = torch.where(mask, cap, cap[:, :1])
        return RetrievalBatch(self.video_batch([it["index"] for it in items]),
                              self.text_batch(filled.reshape(-1)), mask, cap)
