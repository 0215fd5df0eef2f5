"""The cases of each exercise's check, one section per notebook (tests/test_student.py runs them): RIGHT
holds a right answer with the inputs its check cell passes, MISTAKES a typical wrong answer with the words
its message must hold."""

import numpy as np
import torch

from t2vlad_lib.engine.evaluate import retrieval_metrics
from t2vlad_lib.extensions.normalisation import dual_softmax, querybank_normalise

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
RIGHT_05 = [("05.2", 0.425, {})]
MISTAKES_05 = [
    ("05.2", 0.34, {}, "before renormalising"),
    ("05.2", 0.42, {}, "third expert is missing"),
    ("05.2", 0.5, {}, "plain mean"),
    ("05.2", 0.7, {}, "weighted average"),
    ("05.2", "0.425", {}, "should be s_global"),
]

# notebook 06
RIGHT_06 = []
MISTAKES_06 = []

# notebook 07
RIGHT_07 = []
MISTAKES_07 = []

# notebook 08
RIGHT_08 = []
MISTAKES_08 = []

# notebook 09
RIGHT_09 = []
MISTAKES_09 = []

# notebook 10
RIGHT_10 = []
MISTAKES_10 = []

# notebook 11
_g = torch.Generator().manual_seed(1)  # 40 captions x 40 videos with hubs, and a bank of 60 captions
_SIMS = 0.1 * torch.randn(40, 40, generator=_g) + 0.12 * torch.eye(40)
_HUB = 0.1 * torch.rand(40, generator=_g)  # how much every caption likes each video
_SIMS = _SIMS + _HUB
_BANK = 0.1 * torch.randn(60, 40, generator=_g) + _HUB
_EX11_1 = {"sims": _SIMS, "bank": _BANK, "query_masks": torch.ones(40, 1, dtype=torch.bool)}
_R1 = {"dual softmax": lambda t: retrieval_metrics(dual_softmax(_SIMS, t), _EX11_1["query_masks"])["t2v_R1"],
       "QB-Norm": lambda t: retrieval_metrics(querybank_normalise(_SIMS, _BANK, t),
                                              _EX11_1["query_masks"])["t2v_R1"]}
_TAUS = (0.01, 0.02, 0.05, 0.1)
_BEST = {m: max(_TAUS, key=r1) for m, r1 in _R1.items()}  # QB-Norm: 0.05 (0.01 is its worst)
_RESULTS = {"t2v_R1": 34.8, "t2v_R5": 61.5, "t2v_R10": 73.1, "v2t_R1": 36.0, "v2t_R5": 62.6, "v2t_R10": 73.5}
RIGHT_11 = [
    ("11.1", _BEST, _EX11_1),
    ("11.2", {5: 61.5, 10: 73.1}, {"results": _RESULTS}),
    ("11.3", (False, False, False), {}),
]
MISTAKES_11 = [
    ("11.1", {**_BEST, "QB-Norm": 0.01}, _EX11_1, "lowest validation R@1"),
    ("11.1", {**_BEST, "QB-Norm": 0.1}, _EX11_1, "another tau"),
    ("11.1", {**_BEST, "QB-Norm": 0.03}, _EX11_1, "from the grid"),
    ("11.1", 0.02, _EX11_1, "should be a dict"),
    ("11.2", {5: 62.6, 10: 73.5}, {"results": _RESULTS}, "video-to-text"),
    ("11.2", {5: 34.8, 10: 34.8}, {"results": _RESULTS}, "dual R@1"),
    ("11.2", {5: 50.0, 10: 60.0}, {"results": _RESULTS}, "a recall of the dual encoder"),
    ("11.3", (True, False, False), {}, "median rank of 12"),
    ("11.3", (False, True, False), {}, "R@50"),
    ("11.3", (False, False, True), {}, "video-to-text"),
]

# notebook 12
# one shared layer, H = 1024: attention, feed-forward, two LayerNorms
_LAYER = 4 * (1024 * 1024 + 1024) + (1024 * 4096 + 4096) + (4096 * 1024 + 1024) + 4 * 1024
_EMBED = (30_000 + 514) * 128 + 2 * 128 + 128 * 1024 + 1024  # factorised embeddings and their projection
_POOLER = 1024 * 1024 + 1024
RIGHT_12 = [
    ("12.1", _EMBED + _LAYER + _POOLER, {}),
    ("12.3", (5, 0.5), {}),
]
MISTAKES_12 = [
    ("12.1", _EMBED + 24 * _LAYER + _POOLER, {}, "share one set of weights"),
    ("12.1", (30_000 + 514) * 1024 + 2 * 1024 + _LAYER + _POOLER, {}, "factorised"),
    ("12.1", _EMBED + _LAYER, {}, "pooler"),
    ("12.1", 11_683_584, {}, "ALBERT-base"),
    ("12.1", 1e6, {}, "H = 1024"),
    ("12.3", (4, 0.5), {}, "not below 0.05"),
    ("12.3", (6, 0.5), {}, "smallest"),
    ("12.3", (5, 0.375), {}, "tail"),
    ("12.3", (5, 1.0), {}, "two-sided"),
    ("12.3", (5, 0.25), {}, "Bin(3, 1/2)"),
]


RIGHT = [case for n in range(13) for case in globals()[f"RIGHT_{n:02d}"]]
MISTAKES = [case for n in range(13) for case in globals()[f"MISTAKES_{n:02d}"]]
