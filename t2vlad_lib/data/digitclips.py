"""DigitClips: generate the tutorial benchmark in the released expert-feature format, or render a video.

``ensure_digitclips()`` returns a directory (generated on first use, then cached) that ``load_split``
reads like MSRVTT's release::

    digitclips-v<VERSION>[-1shot]-<full|fast>-seed<seed>/
      dataset.json                  layout: experts and dims, split files, caption index, text length
      features.<expert>.pkl         video_id -> float32 (T_e, D_e), or float NaN when missing (audio)
      raw-captions.pkl              video_id -> list of captions, each a list of words
      train_list.txt val_list.txt test_list.txt   one video id per line
      test_caption_idx.pkl          test video_id -> int, the one caption of the 1k-A-style protocol
      attributes.json               {"specs": video_id -> spec, "queries": video_id -> [query per caption]}
                                    (the generator's ground truth; JSON, read with ``read_attributes``)

Experts (T_e, D_e): appearance (12, 64), motion (6, 32), scene (3, 48), audio (12, 32).
Same seed, same sizes -> byte-identical files on every x86-64 CPU, whatever its SIMD extensions and the
number of workers or threads: per-video random streams drawn with integer arithmetic, fixed work chunks,
and experts computed exactly or rounded past their floating-point noise (``experts.py``).

``VERSION`` is part of every generated name: 1 was the first generator (float32 experts whose last bits
depended on the CPU); 2 computed the same single-shot clips exactly; 3 cuts clips into 1-3 shots, each
with its own scene and actors, and binds scenes to actors in the captions (``max_shots=1`` generates
single-shot clips with the same code, the "-1shot" variant).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np

from ..core.utils import cache_dir, is_fast
from .appearance import ExactCNN, appearance_features, load_appearance_cnn
from .captions import encode_pool, make_captions
from .experts import EXPERT_SHAPES, audio_features, motion_features, scene_features
from .render import render_audio, render_frames, sample_spec

__all__ = ["VERSION", "SIZES_FULL", "SIZES_FAST", "generate_digitclips", "ensure_digitclips", "render",
           "dataset_dir", "read_attributes"]

VERSION = 3

SIZES_FULL = {"train": 3000, "val": 500, "test": 1000}
SIZES_FAST = {"train": 200, "val": 50, "test": 100}
_CHUNK = 64  # videos per work unit; fixed so results do not depend on the number of workers


def render(video_id: str, seed: int = 0, max_shots: int = 3) -> tuple[np.ndarray, np.ndarray | None]:
    """Re-create a DigitClips video from its id and seed (not from a stored copy).

    Returns frames (24, 48, 48, 3) uint8 and the waveform (24000,) float32 at 8 kHz, or None when the
    video has no sound track. Raises ValueError for an id that is not ``clipNNNNN``.
    """
    if not (video_id.startswith("clip") and video_id[4:].isdigit()):
        raise ValueError(f"render: video id {video_id!r} is not a DigitClips id (expected 'clipNNNNN')")
    spec = sample_spec(int(video_id[4:]), seed, max_shots)
    return render_frames(spec), render_audio(spec)


def _features_chunk(args: tuple) -> list[tuple]:
    """Worker: all four experts and the captions of a chunk of videos."""
    import torch

    indices, seed, n_captions, pools, max_shots = args
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        specs = [sample_spec(i, seed, max_shots) for i in indices]
        frames = np.stack([render_frames(s) for s in specs])
        app = appearance_features(ExactCNN(load_appearance_cnn()), frames)
    finally:
        torch.set_num_threads(threads)
    out = []
    for k, s in enumerate(specs):
        feats = {
            "appearance": app[k],
            "motion": motion_features(frames[k]),
            "scene": scene_features(frames[k]),
            "audio": audio_features(render_audio(s)),
        }
        pool_id, _ = pools["where"][s["index"]]
        words, queries = make_captions(s, pools[pool_id], n_captions, seed)
        out.append((s["video_id"], feats, words, queries, s))
    return out


def _dump(obj, path: Path) -> None:
    """Pickle without the memo, so equal values give equal bytes whatever the objects' identities."""
    with open(path, "wb") as f:
        p = pickle.Pickler(f, protocol=4)
        p.fast = True  # no memo: shared strings/dtypes are written out each time
        p.dump(obj)


def generate_digitclips(out_dir: str | Path, sizes: dict[str, int] | None = None, seed: int = 0,
                        captions_per_video: int = 6, pool_size: int = 1000, workers: int | None = None,
                        name: str = "digitclips", max_shots: int = 3) -> Path:
    """Generate DigitClips into ``out_dir`` (written to a temporary sibling, then renamed).

    Args:
        sizes: videos per split, e.g. ``{"train": 3000, "val": 500, "test": 1000}`` (default: full).
        seed: the seed; every video ``i`` depends only on ``(seed, i)``.
        captions_per_video: captions per video (6 by default; every one is a distinct string in practice).
        pool_size: captions get cues until they single out their video among consecutive blocks of at
            most this many videos of their own split (the 1,000-video test set is one block).
        workers: processes (default: 2 when more than 256 videos, else in-process).
        max_shots: at most this many shots per video (1: single-shot clips; ``render.sample_spec``).
    Returns:
        the directory.
    """
    sizes = dict(SIZES_FULL if sizes is None else sizes)
    out_dir = Path(out_dir)
    t0 = time.time()
    ids, pools, where, start = {}, {}, {}, 0
    for split, n in sizes.items():
        idx = list(range(start, start + n))
        ids[split] = [f"clip{i:05d}" for i in idx]
        for b in range(0, n, pool_size):
            block = idx[b:b + pool_size]
            pid = f"{split}{b // pool_size}"
            pools[pid] = encode_pool([sample_spec(i, seed, max_shots) for i in block])
            where.update({i: (pid, k) for k, i in enumerate(block)})
        start += n
    total = start
    chunks = []
    for c in range(0, total, _CHUNK):
        idx = list(range(c, min(c + _CHUNK, total)))
        need = {where[i][0] for i in idx}
        chunks.append((idx, seed, captions_per_video,
                       {"where": {i: where[i] for i in idx}} | {p: pools[p] for p in need}, max_shots))
    workers = (2 if total > 256 else 1) if workers is None else workers
    if workers > 1:
        # fork (like torch's DataLoader): spawn would need an `if __name__ == "__main__"` guard in scripts
        ctx = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
            results = [r for chunk in ex.map(_features_chunk, chunks) for r in chunk]
    else:
        results = [r for chunk in chunks for r in _features_chunk(chunk)]

    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        _write(tmp, results, ids, sizes, seed, captions_per_video, pool_size, max_shots, name)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:  # a full disk, a read-only cache, an interrupt: leave no half directory behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"DigitClips: {total} videos ({sizes}) written to {out_dir} in {time.time() - t0:.1f} s")
    return out_dir


def _write(tmp: Path, results: list, ids: dict, sizes: dict, seed: int, captions_per_video: int,
           pool_size: int, max_shots: int, name: str) -> None:
    """The files of a generated directory (``results`` from ``_features_chunk``) into ``tmp``."""
    for expert in EXPERT_SHAPES:
        _dump({vid: feats[expert] for vid, feats, *_ in results}, tmp / f"features.{expert}.pkl")
    _dump({vid: words for vid, _, words, _, _ in results}, tmp / "raw-captions.pkl")
    attributes = {"specs": {vid: s for vid, *_, s in results},
                  "queries": {vid: q for vid, _, _, q, _ in results}}
    (tmp / "attributes.json").write_text(json.dumps(attributes, sort_keys=True) + "\n")
    for split, vids in ids.items():
        (tmp / f"{split}_list.txt").write_text("".join(v + "\n" for v in vids))
    rng = np.random.default_rng([seed, 99])
    _dump({v: int(rng.integers(captions_per_video)) for v in ids["test"]}, tmp / "test_caption_idx.pkl")
    meta = {
        "name": name,
        "version": VERSION,
        "experts": {e: list(s) for e, s in EXPERT_SHAPES.items()},
        "splits": {s: f"{s}_list.txt" for s in sizes},
        "captions": "raw-captions.pkl",
        "caption_index": {"test": "test_caption_idx.pkl"},
        "max_text_tokens": 32,  # 5 of 27,000 captions of the full set are longer
        "generator": {"seed": seed, "sizes": sizes, "captions_per_video": captions_per_video,
                      "pool_size": pool_size, "max_shots": max_shots},
    }
    (tmp / "dataset.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def dataset_name(fast: bool, max_shots: int = 3) -> str:
    """``digitclips-v<VERSION>[-1shot]-<full|fast>``: the data set name carries the version."""
    shots = "" if max_shots == 3 else f"-{max_shots}shot"
    return f"digitclips-v{VERSION}{shots}-{'fast' if fast else 'full'}"


def dataset_dir(fast: bool | None = None, seed: int = 0, root: str | Path | None = None,
                max_shots: int = 3) -> Path:
    """Where ``ensure_digitclips`` keeps a variant: ``<root>/<dataset_name>-seed<seed>`` (``root``
    defaults to ``utils.cache_dir()``)."""
    fast = is_fast() if fast is None else fast
    return Path(root or cache_dir()) / f"{dataset_name(fast, max_shots)}-seed{seed}"


def read_attributes(root: str | Path) -> dict:
    """The ground truth of a generated directory: ``{"specs": id -> spec, "queries": id -> [query]}``."""
    path = Path(root) / "attributes.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; only generated DigitClips directories have attributes")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); regenerate the directory") from None


def ensure_digitclips(fast: bool | None = None, seed: int = 0, root: str | Path | None = None,
                      max_shots: int = 3) -> Path:
    """The DigitClips directory, generated if missing (full: ~1 minute on 2 cores; FAST: seconds).

    Args:
        fast: FAST variant (200/50/100 videos) instead of full (3000/500/1000); default ``T2VLAD_FAST``.
        seed: generation seed.
        root: parent directory (default ``t2vlad_lib.core.utils.cache_dir()``).
    """
    fast = is_fast() if fast is None else fast
    out = dataset_dir(fast, seed, root, max_shots)
    if not (out / "dataset.json").exists():
        generate_digitclips(out, SIZES_FAST if fast else SIZES_FULL, seed=seed, max_shots=max_shots,
                            name=dataset_name(fast, max_shots))
    return out
