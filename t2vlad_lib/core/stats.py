"""How strong is "B beats A"? Paired comparisons over seeds and over test queries.

Two systems A and B are trained with the same seeds and scored on the same test queries. For each seed s we
have per-query ranks (0-based, tie-averaged: ``metrics.t2v_ranks``) of A and of B, so we know, query by
query, whether each system put the right video at rank 0 (R@1) or below K (R@K).

* **Per-seed deltas** d_s = R@K(B, s) - R@K(A, s), in points: the change at each seed.
* **Sign test.** If B were no better than A, each nonzero d_s would be positive with probability 1/2, so the
  chance of at least as many positive seeds as observed is a binomial tail: p = P(X >= n_plus), X ~ Bin(n,
  1/2) (one-sided, n = seeds with d_s != 0). With 3 seeds "holds at every seed" gives p = 1/8: it cannot, on
  its own, reach the usual 0.05; 5 seeds can (1/32).
* **Paired bootstrap over queries.** The seeds share the test set, and R@1 on 1,000 queries moves by about
  sqrt(p (1 - p) / 1000) ~ 1.5 points from the choice of queries alone. Resample the queries with
  replacement (the same resample for A and B and every seed), recompute the mean delta over seeds, and take
  the 2.5 and 97.5 percentiles of ``n_boot`` resamples: a 95 % interval for the mean delta that reflects
  which queries the test set happened to contain (not the variation between seeds, which the per-seed deltas
  show).

:func:`paired_verdict` returns all three with a one-word reading: "holds" when every seed agrees and the
interval excludes 0, "reversed" for the mirror case, else "cannot tell".

When only each seed's R@K is known (a run that kept its summary but not its per-query ranks),
:func:`seed_verdict` gives the same deltas and sign test with a wider, *unpaired* interval: the mean delta
+- 1.96 sqrt((p_A (1 - p_A) + p_B (1 - p_B)) / Q), the normal interval of a difference of two independent
proportions over Q queries. Scoring A and B on the same queries correlates their hits, which only narrows the
paired interval, so a claim that holds with this one also holds with the paired bootstrap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb

import numpy as np

__all__ = ["hits", "sign_test_p", "paired_bootstrap", "Verdict", "paired_verdict", "seed_verdict"]


def hits(ranks: Sequence[float] | np.ndarray, k: int = 1) -> np.ndarray:
    """Per-query hit indicators of R@k from 0-based ranks: rank 0 for k = 1 (a tie at the top, rank 0.5, is a
    miss, as ``metrics.ranks_to_metrics`` counts it), rank < k otherwise. (Q,) -> (Q,) float 0/1."""
    r = np.asarray(ranks, dtype=np.float64)
    return (r == 0).astype(float) if k == 1 else (r < k).astype(float)


def sign_test_p(deltas: Sequence[float]) -> float:
    """One-sided sign-test p of "more seeds improve than chance would give": P(X >= #positive),
    X ~ Bin(n, 1/2) over the n nonzero deltas (ties dropped). 1.0 when no delta is nonzero."""
    d = np.asarray(deltas, dtype=np.float64)
    n, plus = int((d != 0).sum()), int((d > 0).sum())
    return sum(comb(n, i) for i in range(plus, n + 1)) / 2**n if n else 1.0


def _per_query(ranks_a: Sequence, ranks_b: Sequence, k: int) -> np.ndarray:
    """(S, Q) per-seed, per-query hit differences B - A (0, +1 or -1)."""
    if len(ranks_a) != len(ranks_b) or not len(ranks_a):
        raise ValueError(
            f"paired comparison: {len(ranks_a)} and {len(ranks_b)} seeds; expected the same n >= 1"
        )
    rows = []
    for s, (a, b) in enumerate(zip(ranks_a, ranks_b, strict=True)):
        ha, hb = hits(a, k), hits(b, k)
        if ha.shape != hb.shape or ha.ndim != 1 or not ha.size:
            raise ValueError(f"paired comparison: seed {s} has {ha.shape} and {hb.shape} ranks; expected "
                             "the same (Q,) test queries for both systems")
        rows.append(hb - ha)
    if len({len(r) for r in rows}) != 1:
        raise ValueError("paired comparison: every seed must rank the same test queries")
    return np.stack(rows)


def paired_bootstrap(diff: np.ndarray, n_boot: int = 10_000, seed: int = 0, level: float = 0.95
                     ) -> tuple[float, float]:
    """Percentile interval (points) of the mean over seeds of the mean over queries of ``diff`` (S, Q), the
    queries resampled with replacement, one resample shared by all seeds (they score the same queries)."""
    diff = np.atleast_2d(np.asarray(diff, dtype=np.float64))
    q = diff.shape[1]
    per_query = diff.mean(0)  # (Q,): mean over seeds of each query's difference
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 1000):  # chunks keep memory at 1000 x Q indices
        idx = rng.integers(0, q, size=(min(1000, n_boot - start), q))
        means[start : start + len(idx)] = per_query[idx].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return 100.0 * float(lo), 100.0 * float(hi)


@dataclass(frozen=True)
class Verdict:
    """Per-seed deltas (points), their mean, the paired-bootstrap interval of the mean over the test
    queries, the one-sided sign-test p, and the reading ("holds" / "reversed" / "cannot tell")."""

    deltas: tuple[float, ...]
    mean: float
    low: float
    high: float
    sign_p: float
    reading: str
    interval: str = "paired bootstrap over queries"

    def __str__(self) -> str:
        per_seed = ", ".join(f"{d:+.1f}" for d in self.deltas)
        return (f"{self.mean:+.1f} [{self.low:+.1f}, {self.high:+.1f}] (per seed {per_seed}; sign-test p "
                f"{self.sign_p:.3g}): {self.reading}")


def paired_verdict(ranks_a: Sequence, ranks_b: Sequence, k: int = 1, n_boot: int = 10_000, seed: int = 0
                   ) -> Verdict:
    """Does B beat A at R@k? ``ranks_a`` / ``ranks_b``: per seed, the (Q,) per-query ranks of A / B on the
    same test queries (seed i of A paired with seed i of B). See the module docstring for each number."""
    diff = _per_query(ranks_a, ranks_b, k)
    deltas = tuple(100.0 * float(d) for d in diff.mean(1))
    low, high = paired_bootstrap(diff, n_boot, seed)
    return _verdict(deltas, low, high)


def _verdict(deltas: tuple[float, ...], low: float, high: float, interval: str | None = None) -> Verdict:
    """The reading of per-seed deltas and an interval of their mean (the rule of the module docstring)."""
    d = np.asarray(deltas)
    if len(d) >= 2 and (d > 0).all() and low > 0:
        reading = "holds"
    elif len(d) >= 2 and (d < 0).all() and high < 0:
        reading = "reversed"
    else:
        reading = "cannot tell"
    extra = {} if interval is None else {"interval": interval}
    return Verdict(deltas, float(d.mean()), low, high, sign_test_p(deltas), reading, **extra)


def seed_verdict(values_a: Sequence[float], values_b: Sequence[float], n_queries: int) -> Verdict:
    """Does B beat A, from per-seed R@K values in percent (seed i of A paired with seed i of B) scored on
    the same ``n_queries`` test queries? The unpaired normal interval of the module docstring."""
    a, b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or not a.size:
        raise ValueError(f"seed comparison: {a.shape} and {b.shape} values; expected the same n >= 1 seeds")
    if not ((0 <= a) & (a <= 100) & (0 <= b) & (b <= 100)).all() or n_queries < 1:
        raise ValueError(f"seed comparison: values must be R@K in percent [0, 100] over n_queries >= 1 "
                         f"queries; got {a.tolist()}, {b.tolist()}, n_queries={n_queries}")
    deltas = tuple(float(x) for x in b - a)
    pa, pb = a.mean() / 100, b.mean() / 100
    half = 100 * 1.96 * float(np.sqrt((pa * (1 - pa) + pb * (1 - pb)) / n_queries))
    mean = float(np.mean(deltas))
    return _verdict(deltas, mean - half, mean + half, "unpaired normal")
