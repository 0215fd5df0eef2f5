"""The cases of each exercise's check, one section per notebook (tests/test_student.py runs them): RIGHT
holds a right answer with the inputs its check cell passes, MISTAKES a typical wrong answer with the words
its message must hold."""

import numpy as np

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
RIGHT_11 = []
MISTAKES_11 = []

# notebook 12
RIGHT_12 = []
MISTAKES_12 = []


RIGHT = [case for n in range(13) for case in globals()[f"RIGHT_{n:02d}"]]
MISTAKES = [case for n in range(13) for case in globals()[f"MISTAKES_{n:02d}"]]
