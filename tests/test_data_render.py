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
    from t2vlad_lib.data.render import _digit_alpha

    checked = 0
    for s in SPECS[:60]:
        if len(s["actors"]) != 1:
            continue
        a = s["actors"][0]
        frames = render_frames(s).astype(float) / 255
        alpha = _digit_alpha(a["image"], SIZES[a["size"]])
        f, x, y = (v[5] for v in actor_positions(a))
        side = SIZES[a["size"]]
        patch = frames[f, y:y + side, x:x + side][alpha > 0.99]
        assert np.abs(patch.mean(0) - np.array(COLOURS[a["colour"]])).max() < 0.06
        checked += 1
    assert checked > 10


def test_motion_expert_sees_direction():
    """Centroid velocity (features 30, 31) has the sign of the actor's motion for lone moving actors."""
    n = 0
    for s in SPECS[:100]:
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
    """Nearest-centroid on mean scene features recovers the scene for most videos."""
    x = np.stack([scene_features(render_frames(s)).mean(0) for s in SPECS[:120]])
    y = np.array([s["scene"] for s in SPECS[:120]])
    mu, sd = x[:60].mean(0), x[:60].std(0) + 1e-6
    z = (x - mu) / sd
    cents = {c: z[:60][y[:60] == c].mean(0) for c in set(y[:60])}
    names = list(cents)
    pred = [names[int(np.argmin([np.linalg.norm(v - cents[c]) for c in names]))] for v in z[60:]]
    assert np.mean(np.array(pred) == y[60:]) > 0.8


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
