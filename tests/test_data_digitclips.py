"""DigitClips generation: byte-identical files per seed and per CPU, the shipped sample, render = features,
captions."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from t2vlad_lib.data import ensure_digitclips, load_split, render
from t2vlad_lib.data.appearance import ExactCNN, appearance_features, load_appearance_cnn, training_frames
from t2vlad_lib.data.calibrate import oracle_r1
from t2vlad_lib.data.captions import encode_pool, match, parse_bag, query_bag, video_bag
from t2vlad_lib.data.digitclips import SIZES_FAST, VERSION, dataset_dir, generate_digitclips, read_attributes
from t2vlad_lib.data.experts import audio_features, motion_features, scene_features
from t2vlad_lib.data.fixtures import make_digitclips_sample
from t2vlad_lib.data.released import read_pickle

SAMPLE = Path(__file__).resolve().parents[1] / "data_samples" / "digitclips-sample"


def _hashes(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def _attrs(root: Path) -> dict:
    return read_attributes(root)


# sha256 of the shipped sample: a change of these bytes is a new DigitClips version (digitclips.VERSION)
SAMPLE_SHA256 = {
    "attributes.json": "3a34a688bc21d6512d588698251ee592cf999c17f8b7922a8a9b9145245073db",
    "dataset.json": "c48870a0326575c09510211bb8bf0a47890a00c8c786a0b2af72dc80493774d7",
    "features.appearance.pkl": "3e401d29ced68e14f372880dc089e69eea0882f7a7bf35a3e6409a417bf19ad9",
    "features.audio.pkl": "d06def18cec432e56e1c95ee6541171a494e429f0a3fc07802af4c8b90ac87e0",
    "features.motion.pkl": "ec406c6f9ecc2a32bb8e578c1be72d50e2b3e4d18fdb12a9e75d6459ec5c603b",
    "features.scene.pkl": "65a9b5c2efbdea8c79e31af862826670603c87fcf1f1911eea91b00b440dafd3",
    "raw-captions.pkl": "25edcb23112fa36bba540ce0acfe11fd2cd4ca29914fb480cd1889fab14c5c8d",
    "test_caption_idx.pkl": "8dfe5b4f8c3797719354ad3a7ad5f080e2ebd8a03a496b5532b00be37d63c3f8",
    "test_list.txt": "6256c6f2fa2dc698aa6f398cd17951c7757bd012b5688f70ae8c88c879ef0882",
    "train_list.txt": "e0fc7bcc29f03669d37772db613ec059fc084021a27888a38b6dfddcf79e8373",
    "val_list.txt": "122737588517ae1bb9eac4ecfc9cb6ff11e46cca0b3cb9365f0a5626855a0aa5",
}


def test_shipped_sample_hashes_are_pinned():
    assert _hashes(SAMPLE) == SAMPLE_SHA256
    assert json.loads((SAMPLE / "dataset.json").read_text())["version"] == VERSION


@pytest.mark.slow
def test_shipped_sample_is_what_the_generator_makes(tmp_path):
    """Regenerating the 64-video sample gives byte-identical files (same seed, same code)."""
    assert _hashes(make_digitclips_sample(tmp_path / "s")) == SAMPLE_SHA256


# numpy and torch switched to their plain (no SIMD dispatch) code paths, MKL in its portable mode, one thread
def _baseline_cpu_env() -> dict[str, str]:
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__
    env = dict(os.environ)
    env.update({
        "NPY_DISABLE_CPU_FEATURES": " ".join(__cpu_dispatch__),  # every target this numpy build dispatches
        "ATEN_CPU_CAPABILITY": "default",  # torch's scalar kernels
        "ONEDNN_MAX_CPU_ISA": "SSE41",  # oneDNN convolutions without AVX
        "MKL_CBWR": "COMPATIBLE",
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    })
    return env


@pytest.mark.slow
def test_sample_bytes_do_not_depend_on_the_cpus_simd_extensions(tmp_path):
    """The sample regenerated with every SIMD path of numpy and torch disabled (a CPU without AVX) is the
    same bytes as the shipped one: with AVX2 or AVX-512 present, this machine's default paths made those
    (``test_shipped_sample_is_what_the_generator_makes``)."""
    code = ("import sys; from t2vlad_lib.data.fixtures import make_digitclips_sample; "
            "make_digitclips_sample(sys.argv[1])")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s")], env=_baseline_cpu_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert _hashes(tmp_path / "s") == SAMPLE_SHA256


@pytest.mark.slow
def test_fast_generation_is_deterministic_and_worker_independent(tmp_path, monkeypatch):
    from t2vlad_lib.data import digitclips

    # FAST's splits made smaller (a third of the videos): still three chunks of 64 videos for two workers
    sizes = {"train": 100, "val": 20, "test": 40}
    monkeypatch.setattr(digitclips, "SIZES_FAST", sizes)  # what ensure_digitclips(fast=True) generates
    a = ensure_digitclips(fast=True, seed=0, root=tmp_path / "a")  # 160 videos: in this process
    assert a == dataset_dir(True, 0, tmp_path / "a") and a.name == f"digitclips-v{VERSION}-fast-seed0"
    b = generate_digitclips(tmp_path / "b" / a.name, sizes, seed=0, workers=2,
                            name=f"digitclips-v{VERSION}-fast")
    assert _hashes(a) == _hashes(b)
    c = generate_digitclips(tmp_path / "c", {"train": 8, "val": 4, "test": 4}, seed=1, workers=1)
    assert _hashes(c)["features.appearance.pkl"] != _hashes(a)["features.appearance.pkl"]
    for split, n in sizes.items():
        assert len((a / f"{split}_list.txt").read_text().split()) == n
    test = load_split(a, "test", verbose=False)
    missing = np.mean([x is None for x in test.features["audio"]])
    assert 0.1 < missing < 0.4
    assert SIZES_FAST == {"train": 200, "val": 50, "test": 100}  # the FAST set itself, as documented


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
        np.testing.assert_array_equal(app, data.features["appearance"][i])
    with pytest.raises(ValueError, match="'video7010' is not a DigitClips id"):
        render("video7010")


def test_captions_mention_true_attributes_and_single_out_their_video():
    attrs = _attrs(SAMPLE)
    raw = read_pickle(SAMPLE / "raw-captions.pkl")
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

    if q["sound"] not in (None, spec["sound"]):
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
    idx = read_pickle(SAMPLE / "test_caption_idx.pkl")
    assert set(idx) == set((SAMPLE / "test_list.txt").read_text().split())
    assert all(0 <= k < 6 for k in idx.values())
    assert oracle_r1(SAMPLE, "test", "all", "structured") > 90.0
    assert oracle_r1(SAMPLE, "test", "all", "bag") > 50.0


def test_shipped_cnn_classifies_held_out_digits_and_its_exact_version_keeps_that():
    """Digits of odd index in load_digits were never seen in training. The exact integer network gives the
    float features to 2 % of their range, and the float heads classify its features as well."""
    frames, y = training_frames(600, seed=5, parity=1)
    model = load_appearance_cnn()
    exact = ExactCNN(model).features(frames)
    with torch.no_grad():
        feats = model.features(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
        for h in (feats, torch.from_numpy(exact).float()):
            assert (model.digit(h).argmax(1).numpy() == y[:, 0]).mean() > 0.9
            assert (model.colour(h).argmax(1).numpy() == y[:, 1]).mean() > 0.97
            assert (model.size(h).argmax(1).numpy() == y[:, 2]).mean() > 0.97
    assert np.abs(exact - feats.numpy()).max() < 0.02 * float(feats.max())
    assert sum(p.numel() for p in model.parameters()) < 50_000


def test_exact_cnn_sums_are_exact_and_its_check_catches_an_inexact_convolution(monkeypatch):
    exact = ExactCNN(load_appearance_cnn())  # runs the int64 comparison
    frames = np.random.default_rng(3).integers(0, 256, (2, 48, 48, 3)).astype(np.uint8)
    ints = exact.integers(frames)
    assert torch.equal(ints, ints.round()) and float(ints.abs().max()) < 2**24
    real_conv = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda x, w, b, **kw: real_conv(x, w, b, **kw) + 0.25)
    with pytest.raises(RuntimeError, match="not exact"):
        exact.check()
