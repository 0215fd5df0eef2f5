"""The cases of each exercise's check, one section per notebook (tests/test_student.py runs them): RIGHT
holds a right answer with the inputs its check cell passes, MISTAKES a typical wrong answer with the words
its message must hold."""

from pathlib import Path

import numpy as np
import torch

from t2vlad_lib.core.metrics import t2v_ranks, v2t_ranks
from t2vlad_lib.course.checks import _netvlad_from_centers
from t2vlad_lib.data.digitclips import read_attributes
from t2vlad_lib.model.vlad import NetVLAD, vlad

S = np.array([[0.9, 0.1, 0.3, 0.3], [0.5, 0.5, 0.2, 0.2], [0.7, 0.4, 0.4, 0.0], [0.7, 0.8, 0.3, 0.2]])

# (exercise, answer, the check's inputs) and (exercise, wrong answer, inputs, words of its message)

# notebook 00
SAMPLE = Path(__file__).resolve().parents[1] / "data_samples" / "digitclips-sample"
SPECS = read_attributes(SAMPLE)["specs"]
S2 = np.empty((8, 4))
S2[0::2], S2[1::2] = S, 0.5 * S
MASK2 = np.array([[True, True]] * 3 + [[True, False]])
ACTORS = {n: sum(len(s["actors"]) == n for s in SPECS.values()) for n in (1, 2, 3)}
RIGHT_00 = [
    ("00.1", np.array([0, 0, 1, 3]), {"sims": S}),
    ("00.2", (len(t2v_ranks(S2, MASK2)), v2t_ranks(S2, MASK2)), {"sims": S}),
    ("00.3", ACTORS, {"specs": SPECS}),
    ("00.4", ["local similarity", "The score", "global similarity, eq. (4)", "training"], {}),
]
MISTAKES_00 = [
    ("00.1", [1, 1, 2, 4], {"sims": S}, "start at 0"),
    ("00.1", [0, 0.5, 1.5, 3], {"sims": S}, "split-tie"),
    ("00.1", [0, 1, 2, 3], {"sims": S}, "pessimistic"),
    ("00.1", [0, 0, 2, 3], {"sims": S}, "caption(s) [2]"),
    ("00.1", [0, 0, 1], {"sims": S}, "shape (3,)"),
    ("00.2", (8, v2t_ranks(S2, MASK2)), {"sims": S}, "not a query"),
    ("00.2", (7, v2t_ranks(np.vstack([S, 0.5 * S]), MASK2)), {"sims": S}, "interleaved"),
    ("00.2", 7, {"sims": S}, "should be a pair"),
    ("00.3", {1: 3, 2: 6, 3: 7}, {"specs": SPECS}, "64 videos"),
    ("00.3", {1: 12, 2: 25, 3: 27}, {"specs": SPECS}, "every actor of every shot"),
    ("00.4", ["local similarity", "the score", "global similarity", "training", "VLAD with shared centers"],
     {}, "aggregates each side's tokens alone"),
    ("00.4", ["global text head", "local similarity", "the score", "global similarity", "training"], {},
     "reads only t"),
    ("00.4", ["local similarity", "the score"], {}, "2 box(es) are missing"),
    ("00.4", ["the similarity"], {}, "name no single box"),
]

# notebook 01
_gen = torch.Generator().manual_seed(0)
MU = torch.tensor([[-3.0, 0.0], [3.0, 0.5], [0.0, 4.0]])
Z = torch.cat([m + 0.5 * torch.randn(8, 2, generator=_gen) for m in MU + 0.4])  # three shifted blobs
GRID = np.logspace(-2, 2, 41)
with torch.no_grad():
    COS = [float(torch.nn.functional.cosine_similarity(_netvlad_from_centers(MU, a)(Z[None]),
                                                       vlad(Z[None], MU))) for a in GRID]
FIRST = next(i for i, c in enumerate(COS) if c > 0.99)
torch.manual_seed(0)
NET = NetVLAD(4, 3, ghost_clusters=1, assignment="bias").eval()
TOKENS, MASK = torch.randn(2, 5, 4), torch.tensor([[True] * 5, [True, True, True, False, False]])
PERM = torch.tensor([4, 2, 0, 1, 3])
with torch.no_grad():
    PERMUTED = NET(TOKENS[:, PERM], MASK[:, PERM])
    MASK_KEPT = NET(TOKENS[:, PERM], MASK)
    D_AXIS = NET(TOKENS[..., [3, 2, 1, 0]], MASK)
GHOST = torch.tensor([[4.5, -2.0]])
with torch.no_grad():
    ON_GHOST = _netvlad_from_centers(MU, 1.0, GHOST)((GHOST + 0.01 * torch.randn(5, 2))[None])
RIGHT_01 = [
    ("01.1", GRID[FIRST], {"centers": MU, "points": Z}),
    ("01.2", PERMUTED, {"net": NET, "tokens": TOKENS, "mask": MASK}),
    ("01.3", ON_GHOST.view(3, 2).norm(dim=1), {"centers": MU, "ghost": GHOST}),
]
MISTAKES_01 = [
    ("01.1", COS[FIRST], {"centers": MU, "points": Z}, "that is a cosine"),
    ("01.1", FIRST, {"centers": MU, "points": Z}, "position in the grid"),
    ("01.1", GRID[FIRST - 1], {"centers": MU, "points": Z}, "still below 0.99"),
    ("01.1", 100.0, {"centers": MU, "points": Z}, "smaller alpha"),
    ("01.2", MASK_KEPT, {"net": NET, "tokens": TOKENS, "mask": MASK}, "permute `mask`"),
    ("01.2", D_AXIS, {"net": NET, "tokens": TOKENS, "mask": MASK}, "every set changed"),
    ("01.2", PERMUTED[0], {"net": NET, "tokens": TOKENS, "mask": MASK}, "expected the shape (2, 12)"),
    ("01.3", [0.0, 0.0, 0.0], {"centers": MU, "ghost": GHOST}, "not zero"),
    ("01.3", [3 ** -0.5] * 3, {"centers": MU, "ghost": GHOST}, "epsilon"),
    ("01.3", ON_GHOST.view(3, 2).norm(dim=1).roll(1), {"centers": MU, "ghost": GHOST}, "not the right one"),
]

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
RIGHT_11 = []
MISTAKES_11 = []

# notebook 12
RIGHT_12 = []
MISTAKES_12 = []


RIGHT = [case for n in range(13) for case in globals()[f"RIGHT_{n:02d}"]]
MISTAKES = [case for n in range(13) for case in globals()[f"MISTAKES_{n:02d}"]]
