"""metrics.py against a brute-force per-query loop, hand-checked examples and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2vlad_lib.core.metrics import (
    METRIC_KEYS,
    format_metrics_table,
    metrics_dataframe,
    ranks_to_metrics,
    t2v_metrics,
    t2v_ranks,
    v2t_metrics,
    v2t_ranks,
)


# ---------------------------------------------------------------- brute force reference
def _avg_tied_position(scores: list[float], value: float) -> float:
    """Sort descending; mean of the 0-based positions holding ``value`` (CE's tie averaging)."""
    order = sorted(scores, reverse=True)
    positions = [p for p, v in enumerate(order) if v == value]
    return sum(positions) / len(positions)


def brute_t2v(sims: np.ndarray, mask: np.ndarray | None) -> list[float]:
    n = sims.shape[1]
    c = sims.shape[0] // n
    ranks = []
    for i in range(sims.shape[0]):
        if mask is not None and not mask[i // c, i % c]:
            continue
        row = [float(x) for x in sims[i]]
        ranks.append(_avg_tied_position(row, row[i // c]))
    return ranks


def brute_v2t(sims: np.ndarray, mask: np.ndarray | None) -> list[float]:
    n = sims.shape[1]
    c = sims.shape[0] // n
    valid = [mask is None or bool(mask[i // c, i % c]) for i in range(sims.shape[0])]
    ranks = []
    for j in range(n):
        column = [float(sims[i, j]) for i in range(sims.shape[0]) if valid[i]]
        best = np.inf
        for i in range(j * c, (j + 1) * c):
            if valid[i]:
                best = min(best, _avg_tied_position(column, float(sims[i, j])))
        ranks.append(best)
    return ranks


def _random_mask(rng: np.random.Generator, n: int, c: int, n_missing_videos: int) -> np.ndarray:
    """MSRVTT-like: a few videos lose their last caption (19 of 20)."""
    mask = np.ones((n, c), dtype=bool)
    mask[rng.choice(n, size=n_missing_videos, replace=False), -1] = False
    return mask


@pytest.mark.parametrize("n,c,levels,with_mask", [(30, 1, 4, False), (15, 20, 5, True), (12, 3, 2, True)])
def test_matches_brute_force_with_ties(n: int, c: int, levels: int, with_mask: bool) -> None:
    rng = np.random.default_rng(n * 100 + c)
    sims = rng.integers(0, levels, size=(n * c, n)).astype(np.float32)  # integer-valued: many ties
    mask = _random_mask(rng, n, c, n_missing_videos=3) if with_mask else None
    if mask is not None and c > 1:
        mask[0, 1:] = False  # one video with a single caption left
    np.testing.assert_allclose(t2v_ranks(sims, mask), brute_t2v(sims, mask))
    np.testing.assert_allclose(v2t_ranks(sims, mask), brute_v2t(sims, mask))
    # torch input gives the same numbers
    torch_mask = None if mask is None else torch.from_numpy(mask)
    assert t2v_metrics(torch.from_numpy(sims), torch_mask) == t2v_metrics(sims, mask)
    assert v2t_metrics(torch.from_numpy(sims), torch_mask) == v2t_metrics(sims, mask)


def test_continuous_scores_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    n, c = 20, 4
    sims = rng.normal(size=(n * c, n))
    sims[np.arange(n * c), np.arange(n * c) // c] += 1.5  # make the GT usually good
    np.testing.assert_allclose(t2v_ranks(sims), brute_t2v(sims, None))
    np.testing.assert_allclose(v2t_ranks(sims), brute_v2t(sims, None))


def test_hand_checked_4x4() -> None:
    sims = np.array(
        [
            [0.9, 0.1, 0.5, 0.3],
            [0.8, 0.2, 0.8, 0.1],
            [0.4, 0.4, 0.4, 0.4],
            [0.7, 0.6, 0.1, 0.6],
        ]
    )
    # t2v (rows are queries, GT = diagonal):
    #   row 0: GT 0.9 is the top score                               -> rank 0
    #   row 1: GT 0.2; 0.8, 0.8 higher; no tie                      -> rank 2
    #   row 2: all four tied at 0.4: positions 0..3, mean 1.5       -> rank 1.5
    #   row 3: GT 0.6; 0.7 higher; tied with video 1: positions 1,2 -> rank 1.5
    # R1 = 1/4 = 25%, R5 = R10 = R50 = 100%; MedR = median(0, 1.5, 1.5, 2) + 1 = 2.5;
    # MeanR = (0 + 2 + 1.5 + 1.5) / 4 + 1 = 2.25.
    np.testing.assert_allclose(t2v_ranks(sims), [0.0, 2.0, 1.5, 1.5])
    assert t2v_metrics(sims) == {
        "R1": 25.0,
        "R5": 100.0,
        "R10": 100.0,
        "R50": 100.0,
        "MedR": 2.5,
        "MeanR": 2.25,
    }
    # v2t (columns are queries):
    #   col 0: (0.9, 0.8, 0.4, 0.7), GT 0.9 top         -> 0
    #   col 1: (0.1, 0.2, 0.4, 0.6), GT 0.2; 0.4, 0.6 up -> 2
    #   col 2: (0.5, 0.8, 0.4, 0.1), GT 0.4; 0.5, 0.8 up -> 2
    #   col 3: (0.3, 0.1, 0.4, 0.6), GT 0.6 top         -> 0
    # R1 = 50%, R5 = 100%; MedR = median(0, 0, 2, 2) + 1 = 2; MeanR = 1 + 1 = 2.
    np.testing.assert_allclose(v2t_ranks(sims), [0.0, 2.0, 2.0, 0.0])
    assert v2t_metrics(sims) == {
        "R1": 50.0,
        "R5": 100.0,
        "R10": 100.0,
        "R50": 100.0,
        "MedR": 2.0,
        "MeanR": 2.0,
    }


def test_constant_similarity_is_chance_level() -> None:
    n = 10
    # C = 1: every rank is (N - 1) / 2 = 4.5 -> R1 = 0, R5 = 100 (4.5 < 5), MedR = MeanR = 5.5.
    sims = np.zeros((n, n))
    expected = {"R1": 0.0, "R5": 100.0, "R10": 100.0, "R50": 100.0, "MedR": 5.5, "MeanR": 5.5}
    assert t2v_metrics(sims) == expected
    assert v2t_metrics(sims) == expected
    # C = 20 with two videos at 19 captions: t2v still 4.5 for each of the 198 queries;
    # v2t ranks all 198 valid captions: (198 - 1) / 2 = 98.5 -> R50 = 0, MedR = MeanR = 99.5.
    c = 20
    sims = np.full((n * c, n), 0.3, dtype=np.float32)
    mask = np.ones((n, c), dtype=bool)
    mask[[2, 7], -1] = False
    ranks = t2v_ranks(sims, mask)
    assert ranks.shape == (198,)
    np.testing.assert_allclose(ranks, 4.5)
    np.testing.assert_allclose(v2t_ranks(sims, mask), 98.5)
    v2t = v2t_metrics(sims, mask)
    assert v2t["R50"] == 0.0
    assert v2t["MedR"] == 99.5
    assert v2t["MeanR"] == 99.5


@pytest.mark.parametrize("c", [1, 5])
def test_perfect_ranking(c: int) -> None:
    n = 50
    sims = np.repeat(np.eye(n), c, axis=0)  # caption rows of video j score 1 on j, 0 elsewhere
    t2v = t2v_metrics(sims)
    assert t2v == {"R1": 100.0, "R5": 100.0, "R10": 100.0, "R50": 100.0, "MedR": 1.0, "MeanR": 1.0}
    # v2t: the C GT captions tie at the top, so the best one sits at (C - 1) / 2 (CE's averaging)
    np.testing.assert_allclose(v2t_ranks(sims), (c - 1) / 2)
    sims[np.arange(0, n * c, c), np.arange(n)] = 2.0  # first caption strictly best
    assert v2t_metrics(sims)["R1"] == 100.0
    assert v2t_metrics(sims)["MedR"] == 1.0


def test_missing_captions_cannot_be_retrieved() -> None:
    # N = 2, C = 2; caption 1 of video 0 is missing (NaN, and 9.0 on video 1): it must not outrank
    # video 1's own captions in the v2t gallery, and it is not a t2v query.
    sims = np.array([[1.0, 0.0], [np.nan, 9.0], [0.0, 0.5], [0.0, 0.4]])
    mask = np.array([[True, False], [True, True]])
    np.testing.assert_allclose(v2t_ranks(sims, mask), [0.0, 0.0])  # NaN row ignored, 9.0 not in gallery
    np.testing.assert_allclose(t2v_ranks(sims, mask), [0.0, 0.0, 0.0])  # 3 queries, row 1 dropped


def test_ranks_to_metrics_and_tables() -> None:
    m = ranks_to_metrics([0, 0, 3, 7, 60])
    assert m == {"R1": 40.0, "R5": 60.0, "R10": 80.0, "R50": 80.0, "MedR": 4.0, "MeanR": 15.0}
    table = format_metrics_table({"t2v": m, "v2t": {"R1": 12.345}})
    lines = table.splitlines()
    assert lines[0] == "| name | R1 | R5 | R10 | R50 | MedR | MeanR |"
    assert lines[2] == "| t2v | 40.0 | 60.0 | 80.0 | 80.0 | 4.0 | 15.0 |"
    assert lines[3] == "| v2t | 12.3 | - | - | - | - | - |"
    df = metrics_dataframe({"t2v": m})
    assert list(df.columns) == list(METRIC_KEYS)
    assert df.loc["t2v", "MeanR"] == 15.0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="not a multiple"):
        t2v_metrics(np.zeros((7, 3)))
    with pytest.raises(ValueError, match="2-D"):
        t2v_metrics(np.zeros(9))
    with pytest.raises(ValueError, match=r"query_masks: expected shape \(N, C\) = \(3, 2\)"):
        v2t_metrics(np.zeros((6, 3)), np.ones((2, 3), dtype=bool))
    sims = np.zeros((6, 3))
    sims[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN at \[4, 1\] \(caption 0 of video 2\)"):
        t2v_metrics(sims)
    with pytest.raises(ValueError, match="NaN"):
        v2t_metrics(torch.from_numpy(sims))
    mask = np.ones((3, 2), dtype=bool)
    mask[2, 0] = False  # the NaN row is masked out: fine
    assert t2v_ranks(sims, mask).shape == (5,)
    mask[1] = False  # video 1 has no caption at all
    with pytest.raises(ValueError, match=r"video\(s\) \[1\] have no valid caption"):
        v2t_metrics(sims, mask)
    with pytest.raises(ValueError, match="no queries"):
        ranks_to_metrics([])


def test_a_tie_at_the_top_is_not_a_hit_at_one_as_in_ce():
    # caption 0: its video ties with video 1 at the top -> rank 0.5; caption 1: strictly best -> rank 0
    sims = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.5], [0.2, 0.1, 0.3]])
    assert t2v_ranks(sims).tolist() == [0.5, 0.0, 0.0]
    m = t2v_metrics(sims)
    assert m["R1"] == pytest.approx(200 / 3) and m["R5"] == 100.0
