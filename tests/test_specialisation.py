"""The specialisation measure: NMI against hand-computed values, DigitClips token labels, and the video
side on hand-made assignments whose answer is known."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from t2vlad_lib.data.labels import token_frames, token_labels
from t2vlad_lib.extensions.specialisation import caption_words, nmi, video_specialisation


def test_nmi_by_hand_and_against_scikit_learn():
    assert nmi([0, 0, 1, 1], ["a", "a", "b", "b"]) == pytest.approx(1.0)
    assert nmi([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0)
    # a = [0,0,0,1], b = [0,0,1,1]: I = .5 ln(4/3) + .25 ln(2/3) + .25 ln 2, H(a) = -(.75 ln .75 + .25 ln .25)
    mi = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    h_a, h_b = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), math.log(2)
    assert nmi([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(2 * mi / (h_a + h_b))
    assert nmi([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(0.3437, abs=1e-4)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 300), rng.integers(0, 7, 300)
    assert nmi(a.tolist(), b.tolist()) == pytest.approx(normalized_mutual_info_score(a, b))
    with pytest.raises(ValueError, match="same n"):
        nmi([0, 1], [0])


def _spec(actors, scene="grass", sound=None, shots=None):
    base = {"digit": 0, "colour": "red", "size": "big", "motion": "left"}
    shots = shots or [{"start": 0, "end": 3, "scene": scene}]
    return {"sound": sound, "shots": shots, "actors": [dict(base, **a) for a in actors]}


def test_token_labels_follow_which_actors_are_visible():
    # actor A in segments 0-1 (frames 0..15), B enters in segment 2 (frames 16..23)
    spec = _spec([{"digit": 3, "colour": "red", "start": 0, "end": 2},
                  {"digit": 7, "colour": "blue", "size": "small", "start": 2, "end": 3}], sound="humming")
    app = token_labels(spec, "appearance")
    assert len(app) == 12 and list(token_frames("appearance", 8)) == [16]
    assert app[0]["digit"] == (3,) and app[7]["digit"] == (3,) and app[8]["digit"] == (7,)
    assert app[8]["colour"] == ("blue",) and app[8]["size"] == ("small",)
    motion = token_labels(spec, "motion")  # token 3: frames 12..15 (A only), token 4: 16..19 (B only)
    assert motion[3]["digit"] == (3,) and motion[4]["digit"] == (7,)
    scene = token_labels(spec, "scene")
    assert [s["digit"] for s in scene] == [(3,), (3,), (7,)] and scene[0]["scene"] == "grass"
    cut = _spec([{"start": 0, "end": 2}, {"start": 2, "end": 3}],
                shots=[{"start": 0, "end": 2, "scene": "grass"}, {"start": 2, "end": 3, "scene": "moon"}])
    assert [t["scene"] for t in token_labels(cut, "scene")] == ["grass", "grass", "moon"]
    assert token_labels(cut, "appearance")[7]["scene"] == "grass"
    assert token_labels(cut, "audio")[8]["scene"] == "moon"
    assert token_labels(spec, "audio")[0]["sound"] == "humming"
    both = _spec([{"digit": 1, "start": 0, "end": 3}, {"digit": 2, "colour": "blue", "start": 1, "end": 3}])
    assert token_labels(both, "appearance")[5]["colour"] == ("blue", "red")  # sorted tuple of both
    assert token_labels(_spec([{"start": 1, "end": 3}]), "appearance")[0]["digit"] == ()
    with pytest.raises(ValueError, match="tokens 0..2"):
        token_frames("scene", 3)


def test_video_specialisation_on_hand_made_assignments():
    """Appearance tokens go to center 0 when the visible actor is red and to center 1 when blue: NMI with
    colour 1, with size (the same for all) 0. Video 0 switches colour mid-way, so it uses 2 centers; video
    1 stays red. Motion tokens all take center 2."""
    specs = {
        "v0": _spec([{"colour": "red", "start": 0, "end": 1}, {"colour": "blue", "start": 1, "end": 3}]),
        "v1": _spec([{"colour": "red", "start": 0, "end": 3}]),
    }
    owner = torch.tensor([0] * 12 + [1] * 6)  # appearance (12 tokens), motion (6)
    video = torch.zeros(2, 18, 3)
    for v, vid in enumerate(specs):
        for t, lab in enumerate(token_labels(specs[vid], "appearance")):
            video[v, t, 0 if lab["colour"] == ("red",) else 1] = 1.0
        video[v, 12:, 2] = 1.0
    mask = torch.ones(2, 18, dtype=torch.bool)
    table, multi = video_specialisation(video, mask, owner, ["appearance", "motion"], list(specs), specs)
    assert table.loc["appearance", "colour"] == pytest.approx(1.0)
    assert table.loc["appearance", "size"] == pytest.approx(0.0)
    assert table.loc["motion", "colour"] == pytest.approx(0.0)  # one center for every motion token
    assert multi["centers"].to_dict() == {"appearance": 0.5, "motion": 0.0, "all": 1.0}
    # contents: video 0 shows red then blue (2 appearance contents; its motion tokens see the digit 0 moving
    # left throughout: 1), video 1 red only; over all experts both have >= 2 (appearance and motion differ)
    assert multi["contents"].to_dict() == {"appearance": 0.5, "motion": 0.0, "all": 1.0}
    mask[1, 12:] = False  # video 1 has no motion tokens: it does not count for motion
    _, multi = video_specialisation(video, mask, owner, ["appearance", "motion"], list(specs), specs)
    assert multi["centers"]["motion"] == 0.0 and multi["centers"]["all"] == 0.5  # video 1: one center


class _Pieces:
    def __init__(self, pieces):
        self.pieces = pieces

    def convert_ids_to_tokens(self, ids):
        return [self.pieces[i] for i in ids]


def test_caption_words_join_wordpieces():
    tok = _Pieces(["[CLS]", "a", "red", "diagonal", "##ly", "moving", "seven", "[SEP]"])
    words = caption_words(tok, torch.arange(8))
    assert words == ["[CLS]", "a", "red", "diagonally", "diagonally", "moving", "seven", "[SEP]"]
