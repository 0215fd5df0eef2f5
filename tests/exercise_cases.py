"""The cases of each exercise's check, one section per notebook (tests/test_student.py runs them): RIGHT
holds a right answer with the inputs its check cell passes, MISTAKES a typical wrong answer with the words
its message must hold."""

import numpy as np
import pandas as pd
import torch

from t2vlad_lib.core.stats import seed_verdict
from t2vlad_lib.course.checks import EX10_1
from t2vlad_lib.extensions.distill import similarity_distillation_loss

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
# per-seed R@1 of a K sweep (seed x K): the best K by mean is K=9, the runner-up K=16
K_R1 = pd.DataFrame({"K=4": [34.9, 32.7, 37.2], "K=9": [34.8, 35.1, 38.2], "K=16": [34.1, 34.3, 37.2],
                     "K=32": [34.6, 33.9, 36.1]})
K_IN = {"r1": K_R1, "n_queries": 1000}
RIGHT_07 = [("07.1", 6 / 32, {}), ("07.2", 0.36 * 0.64 / 0.005**2, {}),
            ("07.3", seed_verdict(K_R1["K=16"], K_R1["K=9"], 1000), K_IN)]
MISTAKES_07 = [
    ("07.1", 5 / 32, {}, "P(X = 4) alone"),
    ("07.1", 12 / 32, {}, "two-sided"),
    ("07.1", 1 / 32, {}, "one seed disagrees"),
    ("07.1", 0.5, {}, "equally likely"),
    ("07.2", 1.96**2 * 9216, {}, "95 % half-width"),
    ("07.2", 0.2304 / 0.005, {}, "square root"),
    ("07.2", 0.2304 / 0.25, {}, "as a fraction"),
    ("07.3", seed_verdict(K_R1["K=9"], K_R1["K=16"], 1000), K_IN, "wrong sign"),
    ("07.3", seed_verdict(K_R1["K=16"], K_R1["K=9"], 100), K_IN, "n_queries=1000"),
    ("07.3", seed_verdict(K_R1["K=4"], K_R1["K=9"], 1000), K_IN, "second best (K=16)"),
    ("07.3", 0.8, K_IN, "should be the Verdict"),
]

# notebook 08
RIGHT_08 = []
MISTAKES_08 = []

# notebook 09
RIGHT_09 = []
MISTAKES_09 = []

# notebook 10
_S10, _T10 = torch.zeros(2, 2, dtype=torch.float64), torch.tensor(EX10_1["teacher"], dtype=torch.float64)
_P10 = torch.softmax(_T10 / 0.5, 1)
RIGHT_10 = [("10.1", similarity_distillation_loss(_S10, _T10, temperature=0.5).item(), {}),
            ("10.2", 46 * 64**2, {"num_train": 3000, "batch_size": 64})]
MISTAKES_10 = [
    ("10.1", similarity_distillation_loss(_S10, _T10, temperature=1.0).item(), {}, "tau = 1"),
    ("10.1", (_P10 * (_P10.log() - np.log(0.5))).sum(1).mean().item(), {}, "row half"),
    ("10.1", 1.0, {}, "KL(teacher || student)"),
    ("10.2", 47 * 64**2, {"num_train": 3000, "batch_size": 64}, "drops the last incomplete batch"),
    ("10.2", 46 * 64, {"num_train": 3000, "batch_size": 64}, "B^2 passes"),
    ("10.2", 64**2, {"num_train": 3000, "batch_size": 64}, "that is one step"),
    ("10.2", 12, {"num_train": 3000, "batch_size": 64}, "steps per epoch"),
]

# notebook 11
RIGHT_11 = []
MISTAKES_11 = []

# notebook 12
RIGHT_12 = []
MISTAKES_12 = []


RIGHT = [case for n in range(13) for case in globals()[f"RIGHT_{n:02d}"]]
MISTAKES = [case for n in range(13) for case in globals()[f"MISTAKES_{n:02d}"]]
