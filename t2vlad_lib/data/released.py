"""One reader for the released expert-feature format (MSRVTT, ActivityNet, LSMDC) and for DigitClips.

A dataset directory holds ``features.<expert>.pkl`` (video_id -> float32 (T_e, D_e) array, or a float
NaN when the expert is missing for that video; a 1-D (D_e,) array is read as T_e = 1),
``raw-captions.pkl`` (video_id -> list of captions, each a list of words), split lists (text, one id
per line) and optionally a caption-index pickle (video_id -> int) that fixes one test caption per video
(MSRVTT 1k-A, JSFusion). Which files belong to which split is a *layout*: DigitClips writes its own
``dataset.json``; the released benchmarks use the named layouts in ``LAYOUTS`` (see
``data_samples/README.md`` for where to put the files).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .pickles import read_pickle

__all__ = ["RELEASED_DIMS", "Layout", "LAYOUTS", "SplitData", "get_layout", "load_split", "read_pickle"]

# feature width of each released expert (CE / T2VLAD release)
RELEASED_DIMS: dict[str, int] = {"audio": 128, "speech": 300, "face": 512, "ocr": 300, "rgb": 2048,
                                 "flow": 1024, "s3d": 1024, "scene": 2208}


@dataclass(frozen=True)
class Layout:
    """Which files make a benchmark: experts with D_e, split name -> list file, captions, caption index.

    ``feature_files`` overrides the default file name ``features.<expert>.pkl`` per expert;
    ``fuse_captions`` joins all captions of a video into one paragraph (ActivityNet paragraph retrieval).
    """

    name: str
    experts: dict[str, int]
    splits: dict[str, str]
    captions: str = "raw-captions.pkl"
    caption_index: dict[str, str] = field(default_factory=dict)
    max_text_tokens: int = 37
    fuse_captions: bool = False
    feature_files: dict[str, str] = field(default_factory=dict)

    def feature_file(self, expert: str) -> str:
        return self.feature_files.get(expert, f"features.{expert}.pkl")


LAYOUTS: dict[str, Layout] = {
    "msrvtt-1k-a": Layout("msrvtt-1k-a", RELEASED_DIMS,
                          {"train": "train_list_jsfusion.txt", "test": "val_list_jsfusion.txt"},
                          caption_index={"test": "jsfusion_val_caption_idx.pkl"}),
    "msrvtt-1k-b": Layout("msrvtt-1k-b", RELEASED_DIMS,
                          {"train": "train_list_miech.txt", "test": "test_list_miech.txt"}),
    "msrvtt-full": Layout("msrvtt-full", RELEASED_DIMS, {"train": "train_list_full.txt",
                          "val": "val_list_full.txt", "test": "test_list_full.txt"}),
    # CE evaluates ActivityNet paragraph retrieval on val_1; our choice of 64 text tokens for paragraphs
    "activitynet": Layout("activitynet", RELEASED_DIMS, {"train": "train_list.txt", "test": "val_1_list.txt"},
                          captions="raw-captions-train-val_1.pkl", max_text_tokens=64, fuse_captions=True),
    "lsmdc": Layout("lsmdc", RELEASED_DIMS, {"train": "train_list.txt", "val": "val_list.txt",
                    "test": "test_list.txt"}),
}


def get_layout(root: str | Path, layout: str | Layout | None = None) -> Layout:
    """The layout of a directory: ``layout`` itself, a name in ``LAYOUTS``, or ``root/dataset.json``."""
    if isinstance(layout, Layout):
        return layout
    if layout is not None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; expected one of {sorted(LAYOUTS)} or a Layout")
        return LAYOUTS[layout]
    path = Path(root) / "dataset.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no dataset.json; pass layout= one of {sorted(LAYOUTS)}")
    meta = json.loads(path.read_text())
    dims = {e: (d[-1] if isinstance(d, list) else d) for e, d in meta["experts"].items()}
    return Layout(meta.get("name", Path(root).name), dims, meta["splits"],
                  meta.get("captions", "raw-captions.pkl"), meta.get("caption_index", {}),
                  meta.get("max_text_tokens", 37), meta.get("fuse_captions", False),
                  meta.get("feature_files", {}))


@dataclass
class SplitData:
    """One split of a dataset, validated.

    Attributes:
        features: expert -> list over ``video_ids`` of float32 (T_e, D_e) arrays, None where missing.
        captions: per video, its caption strings (words joined by spaces).
        caption_index: per video, the fixed caption of the one-caption protocol, or None.
    """

    name: str
    split: str
    root: Path
    video_ids: list[str]
    features: dict[str, list[np.ndarray | None]]
    captions: list[list[str]]
    dims: dict[str, int]
    caption_index: list[int] | None = None
    max_text_tokens: int = 37

    @property
    def experts(self) -> list[str]:
        return list(self.features)

    def __len__(self) -> int:
        return len(self.video_ids)


def _read_list(path: Path) -> list[str]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: split list not found")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(set(ids)) != len(ids):
        dup = next(v for v in ids if ids.count(v) > 1)
        raise ValueError(f"{path}: video id {dup!r} is listed twice; expected unique ids")
    return ids


def _check_feature(value, path: Path, vid: str, dim: int | None) -> np.ndarray | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{path}: video {vid!r} has a {type(value).__name__}; expected a float32 (T, D) "
                         "array, or float('nan') when the expert is missing")
    arr = value.reshape(1, -1) if value.ndim == 1 else value
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{path}: video {vid!r} has shape {value.shape}; expected (T, D) with T >= 1")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{path}: video {vid!r} has feature dimension {arr.shape[1]}; expected {dim}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: video {vid!r} has NaN or inf inside a present feature; expected finite "
                         "values (mark a missing expert with float('nan') instead of an array)")
    return np.asarray(arr, dtype=np.float32)


def _caption_text(cap, path: Path, vid: str) -> str:
    if isinstance(cap, str):
        return cap.strip()
    if isinstance(cap, (list, tuple)) and all(isinstance(w, str) for w in cap):
        return " ".join(cap).strip()
    raise ValueError(f"{path}: video {vid!r} has a caption of type {type(cap).__name__}; "
                     "expected a list of words")


def load_split(root: str | Path, split: str, layout: str | Layout | None = None,
               experts: list[str] | None = None, verbose: bool = True) -> SplitData:
    """Read and validate one split of a released-format dataset.

    Args:
        root: the dataset directory.
        split: a split of the layout (``train``/``val``/``test``).
        layout: a name in ``LAYOUTS``, a ``Layout``, or None to read ``root/dataset.json``.
        experts: the experts to load (default: every expert of the layout).
    Raises:
        FileNotFoundError: a missing directory, list, captions, caption-index or feature file.
        ValueError: unknown split, ids unknown to the captions file, a video without captions or without
            any expert, a wrong feature dimension, NaN/inf inside a present feature, bad caption index.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset directory not found")
    lay = get_layout(root, layout)
    if split not in lay.splits:
        raise ValueError(f"{root}: layout {lay.name!r} has no split {split!r}; "
                         f"expected one of {list(lay.splits)}")
    experts = list(lay.experts) if experts is None else list(experts)
    unknown = [e for e in experts if e not in lay.experts]
    if unknown:
        raise ValueError(f"{root}: experts {unknown} are not in layout {lay.name!r} ({list(lay.experts)})")
    list_path = root / lay.splits[split]
    ids = _read_list(list_path)
    cap_path = root / lay.captions
    raw = read_pickle(cap_path)
    missing_caps = [v for v in ids if v not in raw]
    if missing_caps:
        raise ValueError(f"{list_path}: {len(missing_caps)} of {len(ids)} ids are unknown to "
                         f"{cap_path.name}, "
                         f"e.g. {missing_caps[:3]}; expected every listed id to have captions")
    captions = []
    for v in ids:
        caps = [_caption_text(c, cap_path, v) for c in raw[v]]
        if not caps:
            raise ValueError(f"{cap_path}: video {v!r} has no captions; expected at least one")
        if not all(caps):
            raise ValueError(f"{cap_path}: video {v!r} has an empty caption (#{caps.index('')}); "
                             "expected words in every caption")
        captions.append([" ".join(caps)] if lay.fuse_captions else caps)
    features: dict[str, list[np.ndarray | None]] = {}
    for e in experts:
        path = root / lay.feature_file(e)
        table = read_pickle(path)
        if not isinstance(table, dict):
            raise ValueError(f"{path}: expected a dict video_id -> array, got {type(table).__name__}")
        absent = [v for v in ids if v not in table]
        features[e] = [_check_feature(table[v], path, v, lay.experts[e]) if v in table else None for v in ids]
        n_missing = sum(x is None for x in features[e])
        if verbose and n_missing:
            extra = f" ({len(absent)} absent from the file)" if absent else ""
            print(f"{path.name}: {n_missing} of {len(ids)} {split} videos have no {e} (missing){extra}")
    for i, v in enumerate(ids):
        if experts and all(features[e][i] is None for e in experts):
            raise ValueError(f"{root}: video {v!r} of {list_path.name} has no features from any expert "
                             f"{experts}; expected at least one")
    index = None
    if split in lay.caption_index:
        idx_path = root / lay.caption_index[split]
        table = read_pickle(idx_path)
        index = []
        for v in ids:
            if v not in table:
                raise ValueError(f"{idx_path}: video {v!r} of {list_path.name} has no caption index")
            k = int(table[v])
            if not 0 <= k < len(raw[v]):
                raise ValueError(f"{idx_path}: video {v!r} has caption index {k}; "
                                 f"expected 0..{len(raw[v]) - 1}")
            index.append(0 if lay.fuse_captions else k)
    dims = {e: lay.experts[e] for e in experts}
    return SplitData(lay.name, split, root, ids, features, captions, dims, index, lay.max_text_tokens)
