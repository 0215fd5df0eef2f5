"""Verdicts with their strength: hand-checked sign tests and bootstrap intervals."""

import numpy as np
import pytest

from t2vlad_lib.core.metrics import ranks_to_metrics
from t2vlad_lib.core.stats import hits, paired_bootstrap, paired_verdict, seed_verdict, sign_test_p


def test_sign_test_by_hand():
    assert sign_test_p([1.2, 0.4, 3.0]) == pytest.approx(1 / 8)  # 3 of 3 seeds: (1/2)^3
    assert sign_test_p([1, 1, 1, 1, 1]) == pytest.approx(1 / 32)
    assert sign_test_p([1, -1, 1]) == pytest.approx(4 / 8)  # P(X >= 2), X ~ Bin(3, 1/2) = (3 + 1) / 8
    assert sign_test_p([1, 0, 1]) == pytest.approx(1 / 4)  # a tie is dropped: 2 of 2
    assert sign_test_p([-1, -1, -1]) == 1.0
    assert sign_test_p([0, 0]) == 1.0


def test_hits_count_like_the_metrics():
    ranks = np.array([0, 0.5, 3, 4.5, 9, 12])
    assert hits(ranks, 1).mean() * 100 == pytest.approx(ranks_to_metrics(ranks)["R1"])  # 0.5 is a miss at 1
    assert hits(ranks, 5).mean() * 100 == pytest.approx(ranks_to_metrics(ranks)["R5"])  # 4.5 is a hit at 5
    assert hits(ranks, 10).mean() * 100 == pytest.approx(ranks_to_metrics(ranks)["R10"])


def test_bootstrap_of_two_queries_by_hand():
    """Differences (1, 0) over 2 queries: a resample holds 0, 1 or 2 copies of the first query with
    probability 1/4, 1/2, 1/4, so its mean is 0, 0.5 or 1: the 95 % interval is [0, 100] points."""
    lo, hi = paired_bootstrap(np.array([[1.0, 0.0]]), n_boot=4000, seed=1)
    assert (lo, hi) == (0.0, 100.0)
    means = []
    rng = np.random.default_rng(0)
    for _ in range(4000):
        means.append(np.array([1.0, 0.0])[rng.integers(0, 2, 2)].mean())
    assert np.mean(np.isclose(means, 0.5)) == pytest.approx(0.5, abs=0.03)


def test_a_constant_difference_has_a_point_interval():
    """Every query gains the same: every resample has the same mean, so the interval is that value."""
    a = [np.full(50, 3.0)] * 3  # rank 3: a miss at 1 for every query and seed
    b = [np.zeros(50)] * 3  # rank 0: a hit
    v = paired_verdict(a, b, k=1, n_boot=500)
    assert v.deltas == (100.0, 100.0, 100.0) and v.low == v.high == 100.0
    assert v.sign_p == pytest.approx(1 / 8) and v.reading == "holds"


def test_reading_needs_every_seed_and_an_interval_without_zero():
    rng = np.random.default_rng(3)
    a = [rng.integers(0, 20, 1000).astype(float) for _ in range(3)]
    better = [np.where(rng.random(1000) < 0.15, 0.0, r) for r in a]  # ~15 % of misses become hits
    v = paired_verdict(a, better)
    assert all(d > 0 for d in v.deltas) and v.low > 0 and v.reading == "holds"
    assert paired_verdict(better, a).reading == "reversed"
    noise = [rng.permutation(r) for r in a]  # same R@1, queries shuffled: no real difference
    assert paired_verdict(a, noise).reading in ("cannot tell",)
    assert paired_verdict(a[:1], better[:1]).reading == "cannot tell"  # one seed cannot tell
    assert "sign-test p 0.125" in str(v)


def test_bad_pairs_are_refused():
    with pytest.raises(ValueError, match="same n"):
        paired_verdict([np.zeros(3)], [np.zeros(3), np.zeros(3)])
    with pytest.raises(ValueError, match="seed 0"):
        paired_verdict([np.zeros(3)], [np.zeros(4)])


def test_seed_verdict_by_hand():
    """R@1 30 % at every seed for A, 34/35/33 % for B, 1,000 queries: mean delta 4.0 points, half-width
    1.96 * sqrt((.30 * .70 + .34 * .66) / 1000) = 1.96 * 0.020843 = 4.085 points: 3 of 3 seeds agree
    (p = 1/8) and still the unpaired interval [-0.09, 8.09] holds 0."""
    v = seed_verdict([30, 30, 30], [34, 35, 33], n_queries=1000)
    assert v.deltas == (4.0, 5.0, 3.0) and v.mean == pytest.approx(4.0)
    assert (v.low, v.high) == (pytest.approx(-0.0853, abs=1e-3), pytest.approx(8.0853, abs=1e-3))
    assert v.sign_p == pytest.approx(1 / 8) and v.reading == "cannot tell" and v.interval == "unpaired normal"
    wide = seed_verdict([30, 30, 30], [40, 41, 39], n_queries=1000)  # 10 points: the interval clears 0
    assert wide.reading == "holds" and wide.low > 0
    assert seed_verdict([40, 41, 39], [30, 30, 30], 1000).reading == "reversed"
    with pytest.raises(ValueError, match="percent"):
        seed_verdict([0.3], [0.4], n_queries=0)
    with pytest.raises(ValueError, match="same n"):
        seed_verdict([30, 31], [30], n_queries=1000)


def test_a_claim_the_unpaired_interval_clears_also_holds_paired():
    """The paired interval is never wider here: the hits of A and B are positively correlated."""
    rng = np.random.default_rng(5)
    a = [rng.integers(0, 20, 1000).astype(float) for _ in range(3)]
    b = [np.where(rng.random(1000) < 0.2, 0.0, r) for r in a]
    paired = paired_verdict(a, b)
    unpaired = seed_verdict([hits(r).mean() * 100 for r in a], [hits(r).mean() * 100 for r in b], 1000)
    assert unpaired.deltas == pytest.approx(paired.deltas)
    assert paired.high - paired.low < unpaired.high - unpaired.low
    assert unpaired.reading == paired.reading == "holds"
