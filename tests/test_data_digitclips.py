"""DigitClips generation: byte-identical files per seed, the shipped sample, render = features, captions."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from t2vlad_lib.data import ensure_digitclips, load_split, render
from t2vlad_lib.data.appearance import appearance_features, load_appearance_cnn, training_frames
from t2vlad_lib.data.calibrate import oracle_r1
from t2vlad_lib.data.captions import encode_pool, match, parse_bag, query_bag, video_bag
from t2vlad_lib.data.digitclips import SIZES_FAST, dataset_dir, generate_digitclips
from t2vlad_lib.data.experts import audio_features, motion_features, scene_features

SAMPLE = Path(__file__).resolve().parents[1] / "data_samples" / "digitclips-sample"


def _hashes(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def _attrs(root: Path) -> dict:
    with open(root / "attributes.pkl", "rb") as f:
        return pickle.load(f)


@pytest.mark.slow
def test_shipped_sample_is_what_the_generator_makes(tmp_path):
    """Regenerating the 64-video sample gives byte-identical files (same seed, same code)."""
    out = generate_digitclips(tmp_path / "s", {"train": 32, "val": 16, "test": 16}, seed=0, workers=1,
                              name="digitclips-sample")
    assert _hashes(out) == _hashes(SAMPLE)


@pytest.mark.slow
def test_fast_generation_is_deterministic_and_worker_independent(tmp_path):
    a = ensure_digitclips(fast=True, seed=0, root=tmp_path / "a")
    assert a == dataset_dir(True, 0, tmp_path / "a") and a.name == "digitclips-fast-seed0"
    b = generate_digitclips(tmp_path / "b" / a.name, SIZES_FAST, seed=0, workers=2, name="digitclips-fast")
    assert _hashes(a) == _hashes(b)
    c = generate_digitclips(tmp_path / "c", {"train": 8, "val": 4, "test": 4}, seed=1, workers=1)
    assert _hashes(c)["features.appearance.pkl"] != _hashes(a)["features.appearance.pkl"]
    for split, n in SIZES_FAST.items():
        assert len((a / f"{split}_list.txt").read_text().split()) == n
    test = load_split(a, "test", verbose=False)
    missing = np.mean([x is None for x in test.features["audio"]])
    assert 0.1 < missing < 0.4


def test_render_reproduces_the_stored_features():
    data = load_split(SAMPLE, "test", verbose=False)
    model = load_appearance_cnn()
    for i in (0, 5, 11):
        vid = data.video_ids[i]
        frames, wave = render(vid, seed=0)
        assert frames.shape == (24, 48, 48, 3) and frames.dtype == np.uint8
        np.testing.assert_array_equal(motion_features(frames), data.features["motion"][i])
        np.testing.assert_array_equal(scene_features(frames), data.features["scene"][i])
        audio = audio_features(wave)
        if data.features["audio"][i] is None:
            assert wave is None
        else:
            np.testing.assert_array_equal(audio, data.features["audio"][i])
        app = appearance_features(model, frames[None])[0]
        np.testing.assert_allclose(app, data.features["appearance"][i], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="'video7010' is not a DigitClips id"):
        render("video7010")


def test_captions_mention_true_attributes_and_single_out_their_video():
    attrs = _attrs(SAMPLE)
    raw = pickle.loads((SAMPLE / "raw-captions.pkl").read_bytes())
    for split in ("train", "val", "test"):
        ids = (SAMPLE / f"{split}_list.txt").read_text().split()
        specs = [attrs["specs"][v] for v in ids]
        pool = encode_pool(specs)
        for i, v in enumerate(ids):
            assert len(raw[v]) == 6
            for words, q in zip(raw[v], attrs["queries"][v], strict=True):
                bag = parse_bag(words)
                assert bag == query_bag(q) and bag <= video_bag(specs[i])
                hits = match(q, pool)
                assert hits[i]
                if q["then"]:
                    assert {"then", "later", "afterwards"} & set(words)
    unique = [match(q, pool).sum() == 1 for v in ids for q in attrs["queries"][v]]
    assert np.mean(unique) > 0.9


def _naive_match(q: dict, spec: dict) -> bool:
    """Reference matcher: try every assignment of query actors to distinct video actors."""
    from itertools import permutations

    if q["scene"] not in (None, spec["scene"]) or q["sound"] not in (None, spec["sound"]):
        return False
    for pick in permutations(spec["actors"], len(q["actors"])):
        if all(all(a[f] == v for f, v in qa.items()) for qa, a in zip(q["actors"], pick, strict=True)):
            if not q["then"] or pick[0]["start"] < pick[1]["start"]:
                return True
    return False


def test_vectorised_match_equals_naive_loop():
    attrs = _attrs(SAMPLE)
    ids = (SAMPLE / "train_list.txt").read_text().split()
    specs = [attrs["specs"][v] for v in ids]
    pool = encode_pool(specs)
    queries = [q for v in ids for q in attrs["queries"][v]]
    assert sum(q["then"] for q in queries) > 3
    for q in queries:
        assert match(q, pool).tolist() == [_naive_match(q, s) for s in specs]


def test_test_caption_index_and_oracle():
    idx = pickle.loads((SAMPLE / "test_caption_idx.pkl").read_bytes())
    assert set(idx) == set((SAMPLE / "test_list.txt").read_text().split())
    assert all(0 <= k < 6 for k in idx.values())
    assert oracle_r1(SAMPLE, "test", "all", "structured") > 90.0
    assert oracle_r1(SAMPLE, "test", "all", "bag") > 50.0


def test_shipped_cnn_classifies_held_out_digits():
    """Digits of odd index in load_digits were never seen in training."""
    frames, y = training_frames(600, seed=5, parity=1)
    model = load_appearance_cnn()
    with torch.no_grad():
        digit, colour, size = model(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    assert (digit.argmax(1).numpy() == y[:, 0]).mean() > 0.9
    assert (colour.argmax(1).numpy() == y[:, 1]).mean() > 0.97
    assert (size.argmax(1).numpy() == y[:, 2]).mean() > 0.97
    assert sum(p.numel() for p in model.parameters()) < 50_000
