"""One reader for the released expert-feature format (MSRVTT, ActivityNet, LSMDC) and for DigitClips.

A dataset directory holds ``features.<expert>.pkl`` (video_id -> float32 (T_e, D_e) array, or a float
NaN when the expert is missing for that video; a 1-D (D_e,) array is read as T_e = 1),
``raw-captions.pkl`` (video_id -> list of captions, each a list of words), split lists (text, one id
per line) and optionally a caption-index pickle (video_id -> int) that fixes one test caption per video
(MSRVTT 1k-A, JSFusion). Which files belong to which split is a *layout*: DigitClips writes its own
``dataset.json``; the released benchmarks use the named layouts in ``LAYOUTS`` (see
``data_samples/README.md`` for where to put the files).

Every file is checked where it is read: pickles through ``pickles.read_pickle`` (no code runs), and each
bad input (malformed ``dataset.json``, an empty, non-UTF-8 or overlapping split list, captions that are not
a list of captions, a non-numeric or mis-shaped feature, a non-integer caption index) raises one
``ValueError`` naming the file, the video id and what was expected.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import numpy as np

from .pickles import read_pickle

__all__ = ["RELEASED_DIMS", "MAX_CAPTION_CHARS", "Layout", "LAYOUTS", "SplitData", "get_layout", "load_split",
           "read_pickle"]

# feature width of each released expert (CE / T2VLAD release)
RELEASED_DIMS: dict[str, int] = {"audio": 128, "speech": 300, "face": 512, "ocr": 300, "rgb": 2048,
                                 "flow": 1024, "s3d": 1024, "scene": 2208}
# one caption, its words joined by spaces (MSRVTT's are under 300); and all captions of a split together, per
# byte of the captions file (words repeated by reference are short in the file, long once joined)
MAX_CAPTION_CHARS = 10_000
_CAPTION_CHARS_PER_BYTE = 32


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
    meta = _read_dataset_json(path)
    dims = {e: (d[-1] if isinstance(d, list) else d) for e, d in meta["experts"].items()}
    return Layout(meta.get("name", Path(root).name), dims, meta["splits"],
                  meta.get("captions", "raw-captions.pkl"), meta.get("caption_index", {}),
                  meta.get("max_text_tokens", 37), meta.get("fuse_captions", False),
                  meta.get("feature_files", {}))


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_file_name(x) -> bool:
    """A non-empty relative path inside the dataset directory (no absolute path, no ``..``)."""
    return isinstance(x, str) and bool(x) and not PurePath(x).is_absolute() and ".." not in PurePath(x).parts


def _is_names(x) -> bool:
    return isinstance(x, dict) and all(isinstance(k, str) and _is_file_name(v) for k, v in x.items())


def _is_dims(x) -> bool:
    def dim(d) -> bool:
        d = d[-1] if isinstance(d, list) and d and all(_is_int(t) for t in d) else d
        return _is_int(d) and d > 0
    return isinstance(x, dict) and bool(x) and all(isinstance(k, str) and dim(d) for k, d in x.items())


# key of dataset.json -> (required, check, what is expected); other keys (e.g. "generator") are ignored. File
# names are relative to the dataset directory: an absolute path would read (and echo in errors) any file
_IN_DIR = "relative to the dataset directory"
_JSON_KEYS = {
    "experts": (True, _is_dims, "a non-empty object expert -> D_e or [T_e, D_e] (positive integers)"),
    "splits": (True, lambda x: _is_names(x) and bool(x),
               f"a non-empty object split -> list file name {_IN_DIR}"),
    "name": (False, lambda x: isinstance(x, str), "a string"),
    "captions": (False, _is_file_name, f"a file name {_IN_DIR}"),
    "caption_index": (False, _is_names, f"an object split -> caption-index file name {_IN_DIR}"),
    "max_text_tokens": (False, lambda x: _is_int(x) and x >= 3, "an integer >= 3 (L with [CLS] and [SEP])"),
    "fuse_captions": (False, lambda x: isinstance(x, bool), "true or false"),
    "feature_files": (False, _is_names, f"an object expert -> feature file name {_IN_DIR}"),
}


def _read_dataset_json(path: Path) -> dict:
    """``dataset.json`` as a dict whose keys have the types ``_JSON_KEYS`` expects, else one ValueError."""
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:  # a directory, no permission
        raise ValueError(f"{path}: cannot be read ({err.strerror}); expected a UTF-8 JSON file") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not valid UTF-8 (byte {err.start}); expected a UTF-8 JSON file") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
                         "expected an object with keys 'experts' and 'splits'") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: holds a JSON {type(meta).__name__}; expected an object with keys "
                         "'experts' and 'splits'")
    for key, (required, check, expected) in _JSON_KEYS.items():
        if key not in meta:
            if required:
                raise ValueError(f"{path}: key {key!r} is missing; expected {expected}")
        elif not check(meta[key]):
            raise ValueError(f"{path}: key {key!r} is {json.dumps(meta[key])[:80]}; expected {expected}")
    return meta


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
    """A split list: UTF-8 text, one video id per line, at least one id, no id twice."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: split list not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as err:  # a directory, no permission
        raise ValueError(f"{path}: cannot be read ({err.strerror}); expected a split list (UTF-8 text, one "
                         "video id per line)") from None
    except UnicodeDecodeError as err:
        line = err.object[: err.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line} is not valid UTF-8 (byte {err.object[err.start]:#04x}); "
                         "expected UTF-8 text, one video id per line") from None
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{path}: the split list is empty; expected one video id per line")
    if len(set(ids)) != len(ids):
        dup = next(v for v in ids if ids.count(v) > 1)
        raise ValueError(f"{path}: video id {dup!r} is listed twice; expected unique ids")
    return ids


def _check_disjoint(root: Path, lay: Layout, split: str, ids: list[str]) -> None:
    """No id of ``split`` is in another split's list (lists not on disk are checked when they are loaded).
    Two splits naming one list file are refused too: with val = test, model selection would happen on the
    test split."""
    mine = root / lay.splits[split]
    for other, name in lay.splits.items():
        path = root / name
        if other == split or not path.exists():
            continue
        if path == mine:
            raise ValueError(f"{mine}: the list of both the {split} and the {other} split (layout "
                             f"{lay.name!r}); expected a list of its own for each (model selection on the "
                             "test split would report a tuned score; hold out training videos with "
                             "data.val_holdout=N when there is no validation list)")
        shared = sorted(set(ids) & set(_read_list(path)))
        if shared:
            raise ValueError(f"{mine} ({split}) and {path} ({other}) share {len(shared)} video ids, e.g. "
                             f"{shared[:3]}; expected disjoint splits")


def _read_table(path: Path, values: str) -> dict:
    table = read_pickle(path)
    if not isinstance(table, dict):
        raise ValueError(f"{path}: holds a {type(table).__name__}; expected a dict video_id -> {values}")
    return table


def _check_feature(value, path: Path, vid: str, dim: int | None) -> np.ndarray | None:
    """One video's features -> float32 (T_e, D_e), or None for a missing expert (float NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{path}: video {vid!r} has a {type(value).__name__}; expected a float32 (T, D) "
                         "array, or float('nan') when the expert is missing")
    if value.dtype.kind not in "fiu":
        raise ValueError(f"{path}: video {vid!r} has an array of dtype {value.dtype}; expected a numeric "
                         "(float32) (T, D) array")
    arr = value.reshape(1, -1) if value.ndim == 1 else value
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{path}: video {vid!r} has shape {value.shape}; expected (T, D) with T >= 1")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{path}: video {vid!r} has feature dimension {arr.shape[1]}; expected {dim}")
    with np.errstate(over="ignore"):
        arr = np.asarray(arr, dtype=np.float32)  # float64 beyond float32 range becomes inf: caught below
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: video {vid!r} has NaN or inf inside a present feature; expected finite "
                         "float32 values (mark a missing expert with float('nan') instead of an array)")
    return arr


def _preview(x, width: int = 30) -> str:
    """A short repr of a bad value: strings cut, at most 4 items and 2 levels (``str`` of a caption nested
    1e5 deep raises RecursionError, of a 2 GB bytearray MemoryError)."""
    if x is None or isinstance(x, (bool, float, np.number, np.bool_)) or isinstance(x, int) and abs(x) < 1e18:
        return repr(x)
    if isinstance(x, (str, bytes)):
        return repr(x[:width]) + ("..." if len(x) > width else "")
    if isinstance(x, (list, tuple)) and width > 8:
        inner = ", ".join(_preview(v, width // 2) for v in x[:4]) + (", ..." if len(x) > 4 else "")
        return f"[{inner}]" if isinstance(x, list) else f"({inner})"
    return type(x).__name__


def _text(x, path: Path, vid: str, k: int) -> str:
    if isinstance(x, bytes):
        try:
            return x.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: video {vid!r}, caption #{k}: {_preview(x)} is not valid UTF-8 (byte "
                             f"{err.start}); expected UTF-8 text") from None
    return x


def _video_captions(caps, path: Path, vid: str, room: int) -> tuple[list[str], int]:
    """One video's captions (a list of word lists, or of caption strings) -> caption strings, and what is
    left of ``room``, the characters the split's captions may still take. A caption's length is checked
    before its words are joined (1e5 references to one 20k-character word would make 2 GB)."""
    expected = "expected a list of captions, each a list of words (or a string)"
    if not isinstance(caps, (list, tuple)):
        raise ValueError(f"{path}: video {vid!r} has captions of type {type(caps).__name__}; {expected}")
    out = []
    for k, cap in enumerate(caps):
        words = [cap] if isinstance(cap, (str, bytes)) else cap
        if not (isinstance(words, (list, tuple)) and all(isinstance(w, (str, bytes)) for w in words)):
            raise ValueError(f"{path}: video {vid!r} has caption #{k} of type {type(cap).__name__} "
                             f"({_preview(cap)}); {expected}")
        n = sum(map(len, words)) + len(words) - 1
        if n > MAX_CAPTION_CHARS:
            raise ValueError(f"{path}: video {vid!r}, caption #{k} has {n} characters; expected at most "
                             f"{MAX_CAPTION_CHARS} (its words joined by spaces)")
        if n > room:
            raise ValueError(f"{path}: video {vid!r}, caption #{k}: the split's captions add up to more than "
                             f"{_CAPTION_CHARS_PER_BYTE} characters per byte of the file; expected captions "
                             "written out, not references that repeat long words")
        room -= n
        text = " ".join(_text(w, path, vid, k) for w in words).strip()
        if not any(c.isprintable() and not c.isspace() for c in text):
            raise ValueError(f"{path}: video {vid!r} has an empty caption (#{k}: {_preview(text)}); expected "
                             "words in every caption (spaces and invisible characters such as U+200B are "
                             "not words)")
        out.append(text)
    if len(caps) > 1 and all(isinstance(c, (str, bytes)) and len(c.split()) == 1 for c in caps):
        raise ValueError(f"{path}: video {vid!r} has one flat list of {len(caps)} words {_preview(caps)}; "
                         f"{expected} (wrap one caption's words in a list)")
    if not out:
        raise ValueError(f"{path}: video {vid!r} has no captions; expected at least one")
    return out, room


def _caption_index(value, path: Path, vid: str, n: int) -> int:
    """A caption index must be an integer 0..n-1 (a float or a bool is an error, not truncated)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{path}: video {vid!r} has caption index {_preview(value)} "
                         f"({type(value).__name__}); expected an integer 0..{n - 1}")
    if not 0 <= value < n:
        raise ValueError(f"{path}: video {vid!r} has caption index {value}; expected 0..{n - 1}")
    return int(value)


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
        ValueError: one line naming the file, the video id and what was expected, for: a malformed
            ``dataset.json`` (or one naming files outside the directory), an unknown split, a split list
            that is empty, not UTF-8, lists an id twice or shares ids with another split; a file that is
            a directory, not a readable pickle or that the pickle loader refuses; ids unknown to the
            captions file, captions that are not a list of captions (a plain string, a flat word list), not
            UTF-8, empty or invisible, longer than ``MAX_CAPTION_CHARS``, or longer together than the file
            can hold; a video without any expert; a feature that is not a numeric (T, D) array, has a wrong
            D or NaN/inf inside; a caption index that is not an integer or is out of range.
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
    _check_disjoint(root, lay, split, ids)
    cap_path = root / lay.captions
    raw = _read_table(cap_path, "list of captions")
    missing_caps = [v for v in ids if v not in raw]
    if missing_caps:
        raise ValueError(f"{list_path}: {len(missing_caps)} of {len(ids)} ids are unknown to "
                         f"{cap_path.name}, "
                         f"e.g. {missing_caps[:3]}; expected every listed id to have captions")
    captions, room = [], _CAPTION_CHARS_PER_BYTE * cap_path.stat().st_size + MAX_CAPTION_CHARS
    for v in ids:
        caps, room = _video_captions(raw[v], cap_path, v, room)
        captions.append([" ".join(caps)] if lay.fuse_captions else caps)
    features: dict[str, list[np.ndarray | None]] = {}
    for e in experts:
        path = root / lay.feature_file(e)
        table = _read_table(path, "array")
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
        table = _read_table(idx_path, "int")
        index = []
        for v in ids:
            if v not in table:
                raise ValueError(f"{idx_path}: video {v!r} of {list_path.name} has no caption index")
            k = _caption_index(table[v], idx_path, v, len(raw[v]))
            index.append(0 if lay.fuse_captions else k)
    dims = {e: lay.experts[e] for e in experts}
    return SplitData(lay.name, split, root, ids, features, captions, dims, index, lay.max_text_tokens)
