"""Do the shared VLAD centers specialise? What each center takes, on the text side and on the video side.

T2VLAD's idea (paper sec. 3.4, Fig. 3) is that text words and video tokens are aggregated on the *same*
centers, so center k of a caption is compared with center k of a video, and a center becomes a shared
"topic". This module measures how far a trained model gets there, on the test set:

* text: for each center, the share of its assignment mass on attribute words of each kind (digit, colour,
  size, motion, scene, sound; ``captions.LEXICON``), and the NMI between an attribute word's argmax center
  and its kind;
* video: the NMI between a real token's argmax center and what the token shows (``data.labels``), per
  expert and attribute, and the share of videos whose real tokens of an expert use >= 2 argmax centers,
  beside its ceiling: the share of videos whose tokens of that expert show >= 2 different contents
  (``CONTENT``; a single-actor, single-scene clip gives its centers nothing to tell apart).
  The appearance expert's *content NMI* is the largest of its NMIs with digit, colour and size: a center
  choice that tracks any one of the attributes the CNN was trained on counts. NMI estimated from a finite
  sample is above 0 even for unrelated labelings, more so when a video's tokens share one center:
  ``video_nmi_chance`` is the same measure with every video's labels taken from another, random video.

NMI is the mutual information normalised by the mean of the two entropies (0: the center says nothing
about the label; 1: each determines the other), as scikit-learn's default.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core.utils import eval_mode
from ..data.captions import LEXICON
from ..data.labels import TOKEN_ATTRIBUTES, token_labels

__all__ = ["KINDS", "CONTENT", "content_ceiling", "nmi", "caption_words", "Assignments",
           "assignments", "video_specialisation", "Specialisation", "specialisation"]

KINDS = ("digit", "colour", "size", "motion", "scene", "sound")
# what each DigitClips expert can sense: a token's content is its labels of these attributes
CONTENT = {"appearance": ("digit", "colour", "size"), "motion": ("digit", "motion"), "scene": ("scene",),
           "audio": ("digit", "colour")}


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(a: list, b: list) -> float:
    """Normalised mutual information 2 I(a; b) / (H(a) + H(b)) of two labelings of the same items (nats
    cancel). Labels may be any hashable values. Two constant labelings give 1, one constant gives 0."""
    if len(a) != len(b) or not len(a):
        raise ValueError(f"nmi: two labelings of the same n >= 1 items expected, got {len(a)} and {len(b)}")
    joint = Counter(zip(a, b, strict=True))
    ca, cb = Counter(a), Counter(b)
    n = len(a)
    h_a, h_b = _entropy(np.array(list(ca.values()), float)), _entropy(np.array(list(cb.values()), float))
    if h_a == 0.0 and h_b == 0.0:
        return 1.0
    mi = sum(c / n * np.log(c * n / (ca[x] * cb[y])) for (x, y), c in joint.items())
    return float(max(0.0, 2.0 * mi / (h_a + h_b)))


def caption_words(tokenizer, input_ids: torch.Tensor) -> list[str]:
    """The word each wordpiece of a caption belongs to (``##`` pieces joined to the word they continue).

    input_ids (L,) of the real tokens -> L words; [CLS]/[SEP] map to themselves."""
    pieces = tokenizer.convert_ids_to_tokens(input_ids.tolist())
    groups: list[list[int]] = []
    for i, piece in enumerate(pieces):
        if piece.startswith("##") and groups:
            groups[-1].append(i)
        else:
            groups.append([i])
    words = [""] * len(pieces)
    for group in groups:
        word = "".join(pieces[j].removeprefix("##") for j in group)
        for j in group:
            words[j] = word
    return words


@dataclass
class Assignments:
    """Soft assignments (ghosts dropped) of a test set. text: per caption (L_i, K) over its real tokens;
    video: (N_v, M, K) with mask (N_v, M) and owner (M,), the expert index of each token position."""

    text: list[torch.Tensor]
    video: torch.Tensor
    video_mask: torch.Tensor
    owner: torch.Tensor


@torch.no_grad()
def assignments(model, evalset, batch_size: int = 256) -> Assignments:
    """Run a T2VLAD's text and video VLAD on an ``EvalSet`` (eval mode) and keep the assignments."""
    dev = next(model.parameters()).device
    text, video, masks, owner = [], [], [], None
    with eval_mode(model):
        for i in range(0, len(evalset.texts), batch_size):
            tokens, tmask = model.text_tokens(evalset.texts.index(slice(i, i + batch_size)).to(dev))
            _, a = model.vlad.encode_text(tokens, tmask, return_assignments=True)
            text += [row[m].cpu() for row, m in zip(a, tmask, strict=True)]
        for i in range(0, len(evalset.videos), batch_size):
            enc = model.video_encoder(evalset.videos.index(slice(i, i + batch_size)).to(dev))
            _, a = model.vlad.encode_video(enc.tokens, enc.token_mask, return_assignments=True)
            if a is None:
                raise ValueError("assignments: this model's video side has no VLAD (vlad kind 'text_only')")
            video.append(a.cpu())
            masks.append(enc.token_mask.cpu())
            owner = enc.expert_of_token.cpu()
    return Assignments(text, torch.cat(video), torch.cat(masks), owner)


def video_specialisation(
    video: torch.Tensor, mask: torch.Tensor, owner: torch.Tensor, experts: list[str], video_ids: list[str],
    specs: dict[str, dict],
) -> tuple[pd.DataFrame, pd.Series]:
    """NMI(argmax center, label) per expert and attribute over the real tokens, and per expert (and "all")
    the share of videos whose real tokens take >= 2 distinct argmax centers ("centers") and show >= 2
    distinct contents (``CONTENT``; "contents", the ceiling of "centers").

    Args:
        video: (N_v, M, K) assignments; mask: (N_v, M) bool real tokens; owner: (M,) expert index of each
            token position (positions of an expert are contiguous, in token order); experts: the E names;
            video_ids: N_v ids; specs: id -> spec (for ``labels.token_labels``).
    Returns:
        (experts x attributes) NMI table, and (experts + "all") x ("centers", "contents") shares.
    """
    offsets = {e: int((owner < i).sum()) for i, e in enumerate(experts)}
    table, multi, contents = {}, {}, {}
    centers_all: list[set] = [set() for _ in video_ids]
    contents_all: list[set] = [set() for _ in video_ids]
    for e_idx, e in enumerate(experts):
        labels: dict[str, list] = {a: [] for a in TOKEN_ATTRIBUTES}
        centers, per_video, per_video_content = [], [], []
        for v, vid in enumerate(video_ids):
            pos = (mask[v] & (owner == e_idx)).nonzero().flatten()
            if not len(pos):
                continue  # a missing expert (audio)
            argmax = video[v, pos].argmax(1).tolist()
            token = token_labels(specs[vid], e)
            seen = set()
            for p in pos.tolist():
                for a in TOKEN_ATTRIBUTES:
                    labels[a].append(token[p - offsets[e]][a])
                seen.add(tuple(token[p - offsets[e]][a] for a in CONTENT.get(e, TOKEN_ATTRIBUTES)))
            centers += argmax
            per_video.append(len(set(argmax)) >= 2)
            per_video_content.append(len(seen) >= 2)
            centers_all[v] |= set(argmax)
            contents_all[v] |= {(e, c) for c in seen}
        table[e] = {a: nmi(labels[a], centers) if centers else float("nan") for a in TOKEN_ATTRIBUTES}
        multi[e] = float(np.mean(per_video)) if per_video else float("nan")
        contents[e] = float(np.mean(per_video_content)) if per_video else float("nan")
    multi["all"] = float(np.mean([len(c) >= 2 for c in centers_all]))
    contents["all"] = float(np.mean([len(c) >= 2 for c in contents_all]))
    return pd.DataFrame(table).T, pd.DataFrame({"centers": multi, "contents": contents})


def content_ceiling(specs: list[dict], experts: tuple[str, ...] = tuple(CONTENT)) -> dict[str, float]:
    """A property of the data alone: per expert, the share of videos whose tokens show >= 2 different
    contents (``CONTENT``), i.e. the most videos whose tokens could take >= 2 centers for a reason.
    A video without a sound track does not count for audio."""
    out = {}
    for e in experts:
        shown = [len({tuple(t[a] for a in CONTENT[e]) for t in token_labels(s, e)}) >= 2
                 for s in specs if e != "audio" or s["sound"] is not None]
        out[e] = float(np.mean(shown))
    return out


@dataclass
class Specialisation:
    """text_share: (K, kinds) share of each center's attribute-word mass per kind (rows sum to 1);
    text_nmi: NMI(argmax center, kind) over attribute words; video_nmi: (experts, attributes) NMI(argmax
    center, label) over real tokens; multi_center: (experts + "all") x ("centers", "contents"): the share of
    videos whose real tokens of that expert take >= 2 distinct argmax centers, and its ceiling, the share
    whose tokens show >= 2 contents; usage: (sides, K) assignment mass shares."""

    text_share: pd.DataFrame
    text_nmi: float
    video_nmi: pd.DataFrame
    multi_center: pd.DataFrame
    usage: pd.DataFrame
    video_nmi_chance: pd.DataFrame | None = None

    @staticmethod
    def _content(table: pd.DataFrame | None) -> float:
        if table is None or "appearance" not in table.index:
            return float("nan")
        return float(table.loc["appearance", ["digit", "colour", "size"]].max())

    @property
    def content_nmi(self) -> float:
        """The appearance expert's largest NMI with digit, colour or size (nan without that expert)."""
        return self._content(self.video_nmi)

    def summary(self) -> dict[str, float]:
        """Flat numbers for tables: text_nmi, content_nmi (and its chance level), nmi_<expert>_<attribute>,
        multi_<expert|all> and its ceiling contents_<expert|all>."""
        out: dict[str, Any] = {"text_nmi": self.text_nmi, "content_nmi": self.content_nmi,
                               "content_nmi_chance": self._content(self.video_nmi_chance)}
        out.update({f"nmi_{e}_{a}": float(v) for (e, a), v in self.video_nmi.stack().items()})
        out.update({f"multi_{e}": float(v) for e, v in self.multi_center["centers"].items()})
        out.update({f"contents_{e}": float(v) for e, v in self.multi_center["contents"].items()})
        return out


def specialisation(
    model, data, specs: dict[str, dict], batch_size: int = 256, seed: int = 0
) -> Specialisation:
    """Measure a trained T2VLAD on ``data.test`` (a ``pipeline.Prepared`` of DigitClips).

    Args:
        model: a T2VLAD with a video VLAD. data: its prepared data (test captions carry input ids).
        specs: video id -> spec (``digitclips.read_attributes(root)["specs"]``).
        seed: of the random pairing of videos for the chance level.
    """
    test = data.test
    tokenizer = (data.query_encoder or data.text_encoder).tokenizer
    asg = assignments(model, test, batch_size)
    k = asg.video.shape[-1]
    rows = []  # (kind, assignment row) of every attribute word of every caption
    for i, a in enumerate(asg.text):
        ids = test.texts.input_ids[i][test.texts.attention_mask[i].bool()]
        for word, row in zip(caption_words(tokenizer, ids), a, strict=True):
            kind = LEXICON.get(word, ("other",))[0]
            if kind != "other":
                rows.append((kind, row))
    kinds = [r[0] for r in rows]
    mass = torch.stack([r[1] for r in rows]) if rows else torch.zeros(0, k)
    table = pd.DataFrame(mass.numpy(), columns=range(k)).assign(kind=kinds).groupby("kind").sum().T
    table = table.reindex(columns=[c for c in KINDS if c in table.columns])
    text_nmi = nmi(kinds, mass.argmax(1).tolist()) if rows else float("nan")
    experts = list(test.videos.features)
    video_nmi, multi = video_specialisation(asg.video, asg.video_mask, asg.owner, experts,
                                            test.videos.video_ids, specs)
    ids = test.videos.video_ids
    others = [ids[j] for j in np.random.default_rng(seed).permutation(len(ids))]
    chance, _ = video_specialisation(asg.video, asg.video_mask, asg.owner, experts, ids,
                                     {v: specs[o] for v, o in zip(ids, others, strict=True)})
    usage = {"text": torch.cat(asg.text).sum(0)}
    usage.update({e: (asg.video * asg.video_mask[..., None])[:, asg.owner == i].sum((0, 1))
                  for i, e in enumerate(experts)})
    usage_df = pd.DataFrame({s: (u / u.sum()).numpy() for s, u in usage.items()}).T
    return Specialisation(table.div(table.sum(axis=1), axis=0), text_nmi, video_nmi, multi, usage_df, chance)
