"""DigitClips rendering: determinism, shapes, actors where the spec says, missing audio share, experts."""

from __future__ import annotations

import numpy as np
import pytest

from t2vlad_lib.data.experts import (
    EXPERT_SHAPES,
    audio_features,
    mel_filterbank,
    motion_features,
    scene_features,
)
from t2vlad_lib.data.render import (
    COLOURS,
    MISSING_AUDIO_P,
    N_FRAMES,
    SIZES,
    actor_positions,
    render_audio,
    render_frames,
    sample_spec,
    shot_of_frame,
)

SPECS = [sample_spec(i, seed=0) for i in range(400)]


def test_spec_and_frames_are_pure_functions_of_seed_and_index():
    a, b = sample_spec(17, seed=3), sample_spec(17, seed=3)
    assert a == b and a != sample_spec(17, seed=4)
    np.testing.assert_array_equal(render_frames(a), render_frames(b))
    np.testing.assert_array_equal(render_audio(SPECS[0]) if SPECS[0]["sound"] else 0,
                                  render_audio(sample_spec(0)) if SPECS[0]["sound"] else 0)
    frames = render_frames(a)
    assert frames.shape == (24, 48, 48, 3) and frames.dtype == np.uint8


def test_spec_ranges():
    for s in SPECS:
        assert 1 <= len(s["actors"]) <= 3
        assert s["actors"][0]["start"] == 0
        for a in s["actors"]:
            assert 0 <= a["start"] < a["end"] <= 3
            frames, x, y = actor_positions(a)
            room = 48 - SIZES[a["size"]]
            assert (x >= 0).all() and (x <= room).all() and (y >= 0).all() and (y <= room).all()
            assert len(frames) == (a["end"] - a["start"]) * 8


def test_missing_audio_share_is_about_a_quarter():
    share = np.mean([s["sound"] is None for s in SPECS])
    assert abs(share - MISSING_AUDIO_P) < 0.06  # binomial sd over 400 videos is ~0.022
    assert all((render_audio(s) is None) == (s["sound"] is None) for s in SPECS[:40])


def test_actor_pixels_carry_its_colour():
    """Where a lone actor's digit is opaque, the frame is close to its colour."""
    from t2vlad_lib.data.render import digit_alpha

    checked = 0
    for s in SPECS[:200]:
        if len(s["actors"]) != 1:
            continue
        a = s["actors"][0]
        frames = render_frames(s).astype(float) / 255
        alpha = digit_alpha(a["image"], SIZES[a["size"]])
        f, x, y = (v[5] for v in actor_positions(a))
        side = SIZES[a["size"]]
        patch = frames[f, y:y + side, x:x + side][alpha > 0.99]
        assert np.abs(patch.mean(0) - np.array(COLOURS[a["colour"]])).max() < 0.06
        checked += 1
    assert checked > 10


def test_motion_expert_sees_direction():
    """Centroid velocity (features 30, 31) has the sign of the actor's motion for lone moving actors."""
    n = 0
    for s in SPECS:
        a = s["actors"][0]
        if len(s["actors"]) != 1 or a["motion"] not in ("left", "right", "up", "down"):
            continue
        m = motion_features(render_frames(s))
        assert m.shape == EXPERT_SHAPES["motion"]
        vx, vy = m[:, 30].mean(), m[:, 31].mean()
        want = {"left": vx < -0.1, "right": vx > 0.1, "up": vy < -0.1, "down": vy > 0.1}[a["motion"]]
        assert want, (s["video_id"], a["motion"], vx, vy)
        n += 1
    assert n > 10


def test_scene_expert_separates_scenes():
    """Nearest-centroid on the scene features of a segment recovers the scene of its shot for most."""
    x = np.concatenate([scene_features(render_frames(s)) for s in SPECS[:120]])  # (360, 48): per segment
    y = np.array([shot_of_frame(s, 8 * k)["scene"] for s in SPECS[:120] for k in range(3)])
    mu, sd = x[:180].mean(0), x[:180].std(0) + 1e-6
    z = (x - mu) / sd
    cents = {c: z[:180][y[:180] == c].mean(0) for c in set(y[:180])}
    names = list(cents)
    pred = [names[int(np.argmin([np.linalg.norm(v - cents[c]) for c in names]))] for v in z[180:]]
    assert np.mean(np.array(pred) == y[180:]) > 0.8


def test_shots_cut_at_segment_boundaries_with_a_new_scene_and_their_own_actors():
    from collections import Counter

    counts = Counter(len(s["shots"]) for s in SPECS)
    assert set(counts) == {1, 2, 3} and counts[2] > counts[3] > 50
    for s in SPECS:
        spans = [(sh["start"], sh["end"]) for sh in s["shots"]]
        assert spans[0][0] == 0 and spans[-1][1] == 3
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
        assert all(a["scene"] != b["scene"] for a, b in zip(s["shots"], s["shots"][1:], strict=False))
        for a in s["actors"]:
            shot = s["shots"][a["shot"]]
            assert shot["start"] <= a["start"] < a["end"] <= shot["end"] and a["scene"] == shot["scene"]
        for sh in s["shots"]:  # every shot starts with an actor on screen
            assert any(a["start"] == sh["start"] for a in s["actors"] if s["shots"][a["shot"]] is sh)
    single = [sample_spec(i, seed=0, max_shots=1) for i in range(100)]
    assert all(len(s["shots"]) == 1 for s in single)


def test_a_cut_changes_the_background():
    s = next(s for s in SPECS if len(s["shots"]) == 3)
    frames = render_frames(s).astype(float)
    jump = np.abs(frames[8] - frames[7]).mean()  # across the first cut
    steady = np.abs(frames[4] - frames[3]).mean()  # inside a shot: the actor and the noise only
    assert jump > 3 * steady  # measured: 26 vs 5.6 levels


def test_audio_expert():
    s = next(s for s in SPECS if s["sound"] is not None)
    wave = render_audio(s)
    assert wave.shape == (N_FRAMES // 8 * 8000,) and np.abs(wave).max() <= 1.0
    feats = audio_features(wave)
    assert feats.shape == EXPERT_SHAPES["audio"] and np.isfinite(feats).all()
    assert np.isnan(audio_features(None))
    fb = mel_filterbank()
    assert fb.shape == (32, 1025)
    np.testing.assert_allclose(fb.sum(1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("digit", [0, 9])
def test_audio_pitch_follows_digit(digit):
    """A lone beeping actor's strongest mel band rises with its digit (pitch 180 * 2**(d/4.5) Hz)."""
    s = sample_spec(0)
    s = dict(s, sound="beeping", actors=[dict(s["actors"][0], digit=digit, start=0, end=3)])
    band = int(np.argmax(audio_features(render_audio(s)).mean(0)))
    freqs = np.linspace(0, 4000, 1025)
    peak = freqs[np.argmax(mel_filterbank()[band])]
    assert abs(np.log2(peak / (180 * 2 ** (digit / 4.5)))) < 0.35


def test_orientation_bins_equal_arctan2_away_from_edges_and_decide_edges_exactly():
    from t2vlad_lib.data.experts import orientation_bins

    rng = np.random.default_rng(0)
    gx, gy = rng.integers(-3060, 3061, 50_000), rng.integers(-3060, 3061, 50_000)
    theta = np.mod(np.arctan2(gy.astype(float), gx.astype(float)), np.pi) / (np.pi / 8)
    away = np.abs(theta - np.rint(theta)) > 1e-9  # float arctan2 is trustworthy here
    np.testing.assert_array_equal(orientation_bins(gx, gy)[away], np.floor(theta[away]).astype(int) % 8)
    # hand-checked edges: 0, 45, 90, 135 degrees start their bins; 180 degrees is 0 again; (0, 0) -> 0
    edges = {(5, 0): 0, (3, 3): 2, (0, 7): 4, (-2, 2): 6, (-4, 0): 0, (0, -7): 4, (0, 0): 0, (2, -2): 6}
    got = orientation_bins(np.array([k[0] for k in edges]), np.array([k[1] for k in edges]))
    assert got.tolist() == list(edges.values())
    full = orientation_bins(np.array([1, -1, 0, 1]), np.array([0, 0, -1, -1]), full_circle=True)
    assert full.tolist() == [0, 8, 12, 14]  # 0, 180, 270, 315 degrees


def test_lbp_uniform_equals_a_naive_loop():
    from t2vlad_lib.data.experts import lbp_uniform

    img = np.random.default_rng(1).integers(0, 6, (9, 11))  # few levels: many ties (>= counts)
    ring = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]
    want = np.zeros((7, 9), int)
    for i in range(1, 8):
        for j in range(1, 10):
            bits = [int(img[i + dy, j + dx] >= img[i, j]) for dy, dx in ring]
            changes = sum(bits[k] != bits[k - 1] for k in range(8))
            want[i - 1, j - 1] = sum(bits) if changes <= 2 else 9
    np.testing.assert_array_equal(lbp_uniform(img), want)


def test_stored_features_are_on_the_quantisation_grid():
    from t2vlad_lib.data.experts import QUANTUM

    s = next(s for s in SPECS if s["sound"] is not None)
    frames = render_frames(s)
    for feats in (motion_features(frames), scene_features(frames), audio_features(render_audio(s))):
        assert feats.dtype == np.float32
        np.testing.assert_array_equal(np.round(feats.astype(np.float64) / QUANTUM) * QUANTUM, feats)
    wave = render_audio(s)
    np.testing.assert_array_equal(np.rint(wave.astype(np.float64) * 32768), wave * 32768.0)  # 16-bit PCM
