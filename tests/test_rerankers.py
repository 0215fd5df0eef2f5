"""Notebook 11's re-ranker table from summaries: the columns read the right fields, a recipe with kept
per-query ranks gets the paired verdict against the same seed's plain T2VLAD ranks, one without falls back
on the unpaired interval, and the results page holds the three tables."""

import dataclasses

import pytest

from t2vlad_lib.core.stats import paired_verdict, seed_verdict
from t2vlad_lib.course import rerankers
from t2vlad_lib.course.readme import tables
from t2vlad_lib.extensions.matching import LISTWISE, PAIRWISE


def fake_summary(seed, plain_r1, reranked_r1, ranks=True, joint=False):
    n = 1000  # queries; the first plain_r1 % (reranked_r1 %) are hits
    plain = [0.0 if i < 10 * plain_r1 else 5.0 for i in range(n)]
    reranked = [0.0 if i < 10 * reranked_r1 else 5.0 for i in range(n)]
    grid = [{"k": k, "weight": w, "t2v_R1": 30.0 + 10 * w + k / 100}
            for k in (5, 10, 20) for w in (0.0, 0.5, 1.0)]
    return {"k": 10, "weight": 0.5, "validation_grid": grid, "per_k": {"10": {"val_R1": 35.1}},
            "rerank_seconds_by_k": {"10": 0.009},
            "dual_seconds_per_query": 0.001,
            "reranked": {"t2v_R1": reranked_r1, "t2v_R5": 60.0, "t2v_R10": 70.0},
            "plain": {"t2v_R1": plain_r1}, "recipe": {"joint": joint},
            "test_ranks": {"dual": plain, "reranked": reranked} if ranks else {}}


def test_table_and_verdicts_from_summaries(tmp_path, monkeypatch):
    joint = dataclasses.replace(LISTWISE, pool="batch", joint=True)
    stored = {(PAIRWISE, 0): fake_summary(0, 34.8, 34.2, ranks=False),
              (PAIRWISE, 1): fake_summary(1, 35.1, 35.5, ranks=False),
              (LISTWISE, 0): fake_summary(0, 34.8, 36.0), (LISTWISE, 1): fake_summary(1, 35.1, 36.6),
              (joint, 0): fake_summary(0, 34.8, 33.0, joint=True)}
    monkeypatch.setattr(rerankers, "reranker_summary", lambda recipe, seed, *a: stored[recipe, seed])
    recipes = {"pairwise": (PAIRWISE, (0, 1)), "listwise": (LISTWISE, (0, 1)), "joint": (joint, (0,))}
    table, verdicts = rerankers.reranker_results(recipes)
    row = table.loc[("listwise", 1)]
    assert row["val R@1: dual"] == pytest.approx(30.05) and row["head alone"] == pytest.approx(40.1)
    assert row["re-ranked"] == 35.1
    assert (row["k"], row["w"], row["test R@1: T2VLAD"], row["re-ranked R@1"]) == (10, 0.5, 35.1, 36.6)
    assert row["ms per query"] == pytest.approx(10.0) and row["x dual"] == pytest.approx(10.0)
    assert set(verdicts) == {"pairwise", "listwise"}  # a one-seed recipe gets no verdict
    want = paired_verdict([stored[LISTWISE, s]["test_ranks"]["dual"] for s in (0, 1)],
                          [stored[LISTWISE, s]["test_ranks"]["reranked"] for s in (0, 1)])
    assert verdicts["listwise"] == want and verdicts["listwise"].deltas == pytest.approx((1.2, 1.5))
    assert verdicts["pairwise"] == seed_verdict([34.8, 35.1], [34.2, 35.5], 1000)
    out = tmp_path / "rerankers.md"
    rerankers.write_rerankers(out, table, verdicts)
    first, every, verdict_rows = tables(out.read_text())
    assert "| listwise | 2 | 35.0 | 36.3 | +1.2, +1.5 |" in first and every.count("| joint |") == 1
    assert "paired bootstrap" in verdict_rows and "unpaired normal" in verdict_rows
