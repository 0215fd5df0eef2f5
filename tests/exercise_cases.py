"""The cases of each exercise's check, one section per notebook (tests/test_student.py runs them): RIGHT
holds a right answer with the inputs its check cell passes, MISTAKES a typical wrong answer with the words
its message must hold."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import PAPER_EXPERTS
from benchmarks.efficiency import encoder_gflop

S = np.array([[0.9, 0.1, 0.3, 0.3], [0.5, 0.5, 0.2, 0.2], [0.7, 0.4, 0.4, 0.0], [0.7, 0.8, 0.3, 0.2]])

# (exercise, answer, the check's inputs) and (exercise, wrong answer, inputs, words of its message)

# notebook 00
RIGHT_00 = [("00.1", np.array([0, 0, 1, 3]), {"sims": S})]
MISTAKES_00 = [
    ("00.1", [1, 1, 2, 4], {"sims": S}, "start at 0"),
    ("00.1", [0, 0.5, 1.5, 3], {"sims": S}, "split-tie"),
    ("00.1", [0, 1, 2, 3], {"sims": S}, "pessimistic"),
    ("00.1", [0, 0, 2, 3], {"sims": S}, "caption(s) [2]"),
    ("00.1", [0, 0, 1], {"sims": S}, "shape (3,)"),
]

# notebook 01
RIGHT_01 = []
MISTAKES_01 = []

# notebook 02
RIGHT_02 = []
MISTAKES_02 = []

# notebook 03
RIGHT_03 = []
MISTAKES_03 = []

# notebook 04
RIGHT_04 = []
MISTAKES_04 = []

# notebook 05
CAPS = ["a red 7 moves left while something beeps", "a small blue digit 3 floats upwards",
        "a green 5 on the moon as a tone hums", "a large 8 drifts down"]  # sound, none, sound, none
W05 = torch.tensor([[0.2, 0.4, 0.1, 0.3], [0.3, 0.2, 0.2, 0.3], [0.2, 0.3, 0.3, 0.2],
                    [0.25, 0.25, 0.25, 0.25]])
EXPERTS = ["appearance", "audio", "motion", "scene"]  # audio: sound 0.35, others 0.225 -> +0.125
IN05_1 = {"weights": W05, "experts": EXPERTS, "captions": CAPS}
RIGHT_05 = [("05.1", 0.125, IN05_1), ("05.2", 0.425, {}),
            ("05.3", {"dual encoder": 9834, "chunked pairs": 491700, "cross-encoder": 24176889}, {})]
MISTAKES_05 = [
    ("05.1", -0.125, IN05_1, "sign is reversed"),
    ("05.1", 12.5, IN05_1, "not percentages"),
    ("05.1", 0.0625, IN05_1, "with all captions"),
    ("05.1", -0.025, IN05_1, "motion expert"),
    ("05.1", 0.3, IN05_1, "parse_bag"),
    ("05.2", 0.34, {}, "before renormalising"),
    ("05.2", 0.42, {}, "third expert is missing"),
    ("05.2", 0.5, {}, "plain mean"),
    ("05.2", 0.7, {}, "weighted average"),
    ("05.2", "0.425", {}, "should be s_global"),
    ("05.3", (9834, 2 * 4917 * 4917 / 100, 4917**2), {}, "round N / 100 up"),
    ("05.3", (9834, 245850, 4917**2), {}, "AND the videos"),
    ("05.3", (9834, 973566, 4917**2), {}, "not 50"),
    ("05.3", (4917**2, 491700, 2 * 4917**2), {}, "not once per pair"),
    ("05.3", (9834, 491700), {}, "expected 3 numbers"),
]

# notebook 06
S06 = torch.tensor([[0.9, 0.3, 0.5], [0.4, 0.7, 0.6], [0.2, 0.8, 0.6]])
RUNS06 = Path(tempfile.mkdtemp(prefix="t2vlad-ex06-"))  # fake finished runs: config.json and results.json


def _run06(name, loss, margin, val, test, v2t=(12.0, 8.0)):
    run = RUNS06 / name
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"loss": {"name": loss, "margin": margin}}))
    split = {"val": (val, v2t[0]), "test": (test, v2t[1])}
    (run / "results.json").write_text(json.dumps(
        {"best_epoch": 20, **{s: {"t2v_R1": t2v, "v2t_R1": v2t_} for s, (t2v, v2t_) in split.items()}}))
    return run


HARD = _run06("fast-seed0", "hardest", 0.2, 11.3, 8.0)
PAPER06 = _run06("fast-maxmargin-seed0", "max_margin", 0.02, 12.7, 9.0)
IN06_2 = {"runs": {"hardest": HARD, "max_margin": PAPER06}}
RUN06_2 = {"hardest": (11.3, 8.0), "max_margin": (12.7, 9.0)}
RELOADED = {"runs": {"hardest": HARD, "max_margin": _run06("reloaded", "hardest", 0.2, 11.3, 8.0)}}
WIDE = {"runs": {"hardest": HARD, "max_margin": _run06("wide-margin", "max_margin", 0.2, 10.0, 7.0)}}
HIST06 = pd.DataFrame({"val_t2v_R1": [10.0, 30.0, 35.0, 34.0], "val_v2t_R1": [12.0, 40.0, 38.0, 39.0]},
                      index=pd.Index([1, 2, 3, 4], name="epoch"))  # v2t selects epoch 2, t2v epoch 3
RIGHT_06 = [("06.1", 0.03, {"sims": S06}), ("06.2", RUN06_2, IN06_2), ("06.3", 2, {"history": HIST06})]
MISTAKES_06 = [
    ("06.1", 0.36, {"sims": S06}, "sum of the hinges"),
    ("06.1", 0.48 / 18, {"sims": S06}, "diagonal's constant m"),
    ("06.1", 0.22 / 6, {"sims": S06}, "bidirectional"),
    ("06.1", 0.06, {"sims": S06}, "their average"),
    ("06.1", 0.34 / 12, {"sims": S06}, "ties with its positive"),
    ("06.1", 11 / 120, {"sims": S06}, "port's margin 0.2"),
    ("06.1", 0.12, {"sims": S06}, "hardest-negative loss"),
    ("06.1", 0.5, {"sims": S06}, "12 hinges"),
    ("06.2", RUN06_2, {"runs": {"hardest": HARD, "max_margin": RUNS06 / "missing"}}, "no finished run"),
    ("06.2", RUN06_2, {"runs": {"hardest": HARD, "max_margin": HARD}}, "own out_dir"),
    ("06.2", RUN06_2, RELOADED, "loss.name=max_margin"),
    ("06.2", RUN06_2, WIDE, "loss.margin=0.02"),
    ("06.2", {"hardest": (8.0, 11.3), "max_margin": (9.0, 12.7)}, IN06_2, "validation first"),
    ("06.2", {"hardest": (12.0, 8.0), "max_margin": (12.0, 8.0)}, IN06_2, "video-to-text"),
    ("06.2", {"hardest": (0.113, 0.08), "max_margin": (0.127, 0.09)}, IN06_2, "in percent"),
    ("06.2", {"hardest": (12.7, 9.0), "max_margin": (11.3, 8.0)}, IN06_2, "swapped"),
    ("06.2", ((11.3, 8.0), (12.7, 9.0)), IN06_2, "the keys 'hardest' and 'max_margin'"),
    ("06.3", 40.0, {"history": HIST06}, "v2t R@1 itself"),
    ("06.3", 1, {"history": HIST06}, "0-based"),
    ("06.3", 3, {"history": HIST06}, "val_v2t_R1"),
    ("06.3", 4, {"history": HIST06}, "highest"),
]

# notebook 07
RIGHT_07 = []
MISTAKES_07 = []

# notebook 08
# 2 captions of 3 positions (the last of caption 2 is padding), K = 2 real centers; 1 video of 2 tokens
T_ASSIGN = torch.tensor([[[0.5, 0.3], [0.6, 0.2], [0.4, 0.4]], [[0.1, 0.1], [0.5, 0.5], [0.0, 0.0]]])
TMASK = torch.tensor([[True, True, True], [True, True, False]])  # ghost shares 0.2, 0.2, 0.2, 0.8, 0.0
V_ASSIGN = torch.tensor([[[0.7, 0.2], [0.3, 0.3]]])
IN08_1 = {"t_assign": T_ASSIGN, "tmask": TMASK, "v_assign": V_ASSIGN, "vmask": torch.tensor([[True, True]])}
KINDS = ["digit", "colour", "size"]
LIFT0 = pd.DataFrame([[1.0, 2.0, 0.5], [0.5, 1.5, 2.5], [0.2, 3.0, 0.1], [2.0, 0.5, 0.6]], columns=KINDS)
SHARE0 = pd.DataFrame([[0.5, 0.4, 0.1], [0.5, 0.2, 0.3], [0.3, 0.6, 0.1], [0.8, 0.1, 0.1]], columns=KINDS)
LIFT1 = pd.DataFrame([[2.0, 1.0, 0.5], [0.5, 2.5, 2.0], [0.2, 0.3, 3.1], [1.0, 1.8, 0.6]], columns=KINDS)
SHARE1 = pd.DataFrame([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.2, 0.2, 0.6], [0.4, 0.5, 0.1]], columns=KINDS)
IN08_2 = {"seed0": (LIFT0, SHARE0, None), "seed1": (LIFT1, SHARE1, None)}  # colour: {0: [0, 2], 1: [1, 3]}
# 2 videos; tokens 0-2 appearance, 3-4 motion; K = 3: appearance spreads 2 and 1, motion 1 and 2
V08_3 = torch.tensor([[[0.9, 0.0, 0.1], [0.1, 0.8, 0.1], [0.9, 0.0, 0.1], [0.1, 0.1, 0.8], [0.1, 0.2, 0.7]],
                      [[0.1, 0.1, 0.8], [0.2, 0.1, 0.7], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]]])
IN08_3 = {"v_assign": V08_3, "owner": torch.tensor([0, 0, 0, 1, 1]), "experts": ["appearance", "motion"]}
RIGHT_08 = [("08.1", (0.28, 0.25), IN08_1), ("08.2", {0: [0, 2], 1: [3, 1]}, IN08_2),
            ("08.3", (1.5, 1.5), IN08_3)]
MISTAKES_08 = [
    ("08.1", (0.25, 0.28), IN08_1, "swapped them"),
    ("08.1", (0.72, 0.75), IN08_1, "K real centers"),
    ("08.1", (0.4, 0.25), IN08_1, "padded positions"),
    ("08.1", (0.3, 0.25), IN08_1, "per caption/video first"),
    ("08.1", (1 / 3, 1 / 3), IN08_1, "uniform share"),
    ("08.1", (0.1, 0.1), IN08_1, "1 minus the sum"),
    ("08.2", {0: [1, 3], 1: [0, 2]}, IN08_2, "seeds are swapped"),
    ("08.2", {0: [2], 1: [1]}, IN08_2, "highest colour lift"),
    ("08.2", {0: [2], 1: [1, 3]}, IN08_2, "raw share"),
    ("08.2", {0: [1, 3], 1: [2, 4]}, IN08_2, "numbered from 0"),
    ("08.2", {0: [0], 1: [1]}, IN08_2, "idxmax(axis=1)"),
    ("08.2", [[0, 2], [1, 3]], IN08_2, "a dict {0:"),
    ("08.3", (1.5, 1.5 + 1e-2), IN08_3, "motion token"),
    ("08.3", (2.0, 2.0), IN08_3, "over the centers"),
]

# notebook 09
IN09_1 = {"gflop": encoder_gflop, "experts": PAPER_EXPERTS}
RIGHT_09 = [("09.1", 4, IN09_1), ("09.2", [4, 8], {}), ("09.3", (700_000, 300_000), {})]
MISTAKES_09 = [
    ("09.1", 3, IN09_1, "just below 2.75x"),
    ("09.1", 5, IN09_1, "shallower MMT"),
    ("09.1", 3.58, IN09_1, "not a FLOP ratio"),
    ("09.1", 1, IN09_1, "only 1.01x"),
    ("09.2", [2, 4], {}, "chunks of 100"),
    ("09.2", [1600, 6400], {}, "encoding count"),
    ("09.2", [3.7, 7.1], {}, "before you look"),
    ("09.2", [5, 9], {}, "take their ratio"),
    ("09.3", (300_000, 700_000), {}, "swapped"),
    ("09.3", (0.7, 0.3), {}, "count videos"),
    ("09.3", (1_000_000, 300_000), {}, "no fixed key"),
    ("09.3", (700_000, 0), {}, "not lost"),
    ("09.3", (700_000, 100_000), {}, "every expert"),
]

# notebook 10
RIGHT_10 = []
MISTAKES_10 = []

# notebook 11
RIGHT_11 = []
MISTAKES_11 = []

# notebook 12
RIGHT_12 = []
MISTAKES_12 = []


RIGHT = [case for n in range(13) for case in globals()[f"RIGHT_{n:02d}"]]
MISTAKES = [case for n in range(13) for case in globals()[f"MISTAKES_{n:02d}"]]
