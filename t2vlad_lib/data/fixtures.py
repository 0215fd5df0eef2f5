"""The small datasets shipped in ``data_samples/``, and the functions that regenerate them.

* ``make_msrvtt_fixture``: 12 videos in exactly the MSRVTT released layout (random features with the real
  expert dims, real-looking ids, 20 captions per video with one video at 19, the 1k-A / 1k-B / full split
  lists and ``jsfusion_val_caption_idx.pkl``). Features are random: it tests the reader, nothing else.
* ``make_digitclips_sample``: a 64-video DigitClips (32/16/16) in its own layout.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .digitclips import generate_digitclips
from .released import RELEASED_DIMS

__all__ = ["SAMPLES_DIR", "make_msrvtt_fixture", "make_digitclips_sample"]

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "data_samples"
# share of videos without each expert (float NaN in the pickles); the rest are always present
_MISSING = {"face": 0.4, "ocr": 0.5, "speech": 0.3, "audio": 0.1}
_SUBJECTS = ["a man", "a woman", "a cartoon character", "people", "a girl", "a chef", "a band", "a dog"]
_ACTIONS = ["is talking about", "is cooking", "are playing", "is singing about", "is showing", "explains"]
_OBJECTS = ["cars", "a recipe", "football", "a song", "a video game", "the news", "a new phone",
            "the weather"]


def _write(obj, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)


def make_msrvtt_fixture(out_dir: str | Path = SAMPLES_DIR / "msrvtt-fixture", seed: int = 0) -> Path:
    """Write the MSRVTT-layout fixture (about 0.8 MB) into ``out_dir`` and return it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train = [f"video{i}" for i in range(6)]
    val = ["video6513", "video6514"]
    test = ["video7010", "video7011", "video7012", "video7013"]
    ids = train + val + test
    splits = {
        "train_list_full.txt": train, "val_list_full.txt": val, "test_list_full.txt": test,
        "train_list_jsfusion.txt": train + val, "val_list_jsfusion.txt": test,
        "train_list_miech.txt": train + val[:1], "test_list_miech.txt": val[1:] + test,
    }
    for name, vids in splits.items():
        (out / name).write_text("".join(v + "\n" for v in vids))
    captions = {}
    for v in ids:
        n = 19 if v == "video7012" else 20  # MSRVTT has a few videos with 19 captions
        captions[v] = [" ".join([_SUBJECTS[rng.integers(8)], _ACTIONS[rng.integers(6)],
                                 _OBJECTS[rng.integers(8)]]).split() for _ in range(n)]
    _write(captions, out / "raw-captions.pkl")
    _write({v: int(rng.integers(len(captions[v]))) for v in test}, out / "jsfusion_val_caption_idx.pkl")
    for expert, dim in RELEASED_DIMS.items():
        table = {}
        for k, v in enumerate(ids):
            if rng.random() < _MISSING.get(expert, 0.0) and k != 0:
                table[v] = float("nan")
            else:
                table[v] = rng.normal(0, 1, (int(rng.integers(1, 4)), dim)).astype(np.float32)
        _write(table, out / f"features.{expert}.pkl")
    return out


def make_digitclips_sample(out_dir: str | Path = SAMPLES_DIR / "digitclips-sample", seed: int = 0) -> Path:
    """Write the 64-video DigitClips sample (32 train / 16 val / 16 test, ~0.5 MB) and return it."""
    return generate_digitclips(out_dir, {"train": 32, "val": 16, "test": 16}, seed=seed, workers=1,
                               name="digitclips-sample")
