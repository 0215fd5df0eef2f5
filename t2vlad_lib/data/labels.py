"""What each DigitClips video token shows: ground-truth labels per expert token, from the video's spec.

DigitClips knows, frame by frame, which actors are visible (``render.actor_positions``), and so what every
expert token covers: appearance token t is frame 2t, motion token t the frames 4t..4t+3, scene token t the
8-frame segment t, audio token t the 0.25 s = 2 frames 2t..2t+1. A token's labels are, per attribute, the
sorted tuple of the values of the actors visible there (``()`` when none is), plus the scene of the token's
shot and the video's sound. ``specialisation.py`` compares these labels with the VLAD center each token
is assigned to. (There is no label for "which actors": nearly unique per video, it would make a center that
is merely constant per video look informative.)
"""

from __future__ import annotations

from .experts import EXPERT_SHAPES
from .render import N_FRAMES, N_SEGMENTS, shot_of_frame

__all__ = ["TOKEN_ATTRIBUTES", "token_frames", "token_labels"]

TOKEN_ATTRIBUTES = ("digit", "colour", "size", "motion", "scene", "sound")


def token_frames(expert: str, t: int) -> range:
    """The video frames that token t of a DigitClips expert covers."""
    n_tokens = EXPERT_SHAPES[expert][0]
    if not 0 <= t < n_tokens:
        raise ValueError(f"token_frames: expert {expert!r} has tokens 0..{n_tokens - 1}, got {t}")
    if expert == "appearance":
        return range(2 * t, 2 * t + 1)
    span = N_FRAMES // n_tokens  # motion 4, scene 8, audio 2 frames per token
    return range(span * t, span * (t + 1))


def token_labels(spec: dict, expert: str) -> list[dict[str, object]]:
    """Labels of every token of one expert of one video (``spec`` from ``attributes.json``), in order.

    Returns T_e dicts attribute -> label (a hashable value; tuples for the actor attributes).
    """
    seg = N_FRAMES // N_SEGMENTS
    out = []
    for t in range(EXPERT_SHAPES[expert][0]):
        frames = token_frames(expert, t)
        visible = [a for a in spec["actors"]
                   if any(a["start"] * seg <= f < a["end"] * seg for f in frames)]
        labels: dict[str, object] = {f: tuple(sorted({a[f] for a in visible}, key=str))
                                     for f in ("digit", "colour", "size", "motion")}
        labels["scene"] = shot_of_frame(spec, frames[0])["scene"]  # a token never straddles a cut
        labels["sound"] = spec["sound"] or "none"
        out.append(labels)
    return out
