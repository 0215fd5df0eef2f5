"""Notebook 11's re-rankers over seeds: each recipe's summary (shipped, or trained here), one table, the
verdicts against plain T2VLAD, and ``docs/results/rerankers.md`` (whose first table the README copies).

    table, verdicts = reranker_results()     # RERANKERS on the tutorial profile

Every recipe re-ranks the test top-k of the same seed's ``tutorial`` T2VLAD (frozen), except a joint recipe,
whose dual encoder trains with its head (``matching.train_matching``); "T2VLAD" is always the plain run. A
verdict pairs each seed's re-ranked ranks with that seed's plain T2VLAD ranks over the same test queries
(paired bootstrap) when the summaries kept them, else it falls back on the unpaired interval.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.stats import Verdict, paired_verdict, seed_verdict
from ..data.digitclips import SIZES_FULL
from ..engine.runs import read_results
from ..engine.train import ensure_trained
from ..extensions.matching import (
    FIRST_RECIPE,
    LISTWISE,
    PAIRWISE,
    RECIPE,
    MatchingRecipe,
    train_matching,
)
from . import ROOT
from .ablate import markdown_table
from .beyond import system_config
from .shipped import install_extra

__all__ = ["RERANKERS", "reranker_summary", "reranker_results", "write_rerankers"]

_PAIRWISE = {  # binary cross-entropy on (positive, negative) pairs
    "1. hardest in the batch": (FIRST_RECIPE, (0,)),
    "2. sampled in the batch + random": (
        dataclasses.replace(PAIRWISE, pool="batch", epochs=20, residual=False), (0,)),
    "3. sampled in the gallery + random": (dataclasses.replace(PAIRWISE, residual=False), (0,)),
    "4. as 3, residual head": (PAIRWISE, (0, 1, 2)),
}
_SKIP = dataclasses.replace(LISTWISE, missed="skip")
_LISTWISE = {  # softmax cross-entropy over the dual encoder's top 10
    "5. listwise on the dual's top 10": (LISTWISE, (0,)),
    "6. as 5, tokens before self-attention": (dataclasses.replace(LISTWISE, tokens="projected"), (0,)),
    "7. as 5, cross-attention": (dataclasses.replace(LISTWISE, cross=True), (0,)),
    "8. as 5, trained jointly (CLIP2TV)": (dataclasses.replace(LISTWISE, pool="batch", joint=True, epochs=15,
                                                               keep_best=False), (0,)),
    "9. as 5, true labels as video tokens": (dataclasses.replace(LISTWISE, tokens="labels"), (0,)),
    "10. as 5, missed captions left out": (_SKIP, (0, 1, 2)),
    "11. as 10, true labels as video tokens": (dataclasses.replace(_SKIP, tokens="labels"), (0,)),
    "12. as 10, 4x the lr, 12 epochs": (RECIPE, (0, 1, 2)),  # the library's default
    "13. as 12, true labels as video tokens": (dataclasses.replace(RECIPE, tokens="labels"), (0,)),
}
# name -> (recipe, seeds); 9, 11 and 13 are the diagnostic: the same head on what each token truly shows
RERANKERS: dict[str, tuple[MatchingRecipe, tuple[int, ...]]] = {**_PAIRWISE, **_LISTWISE}


def reranker_summary(recipe: MatchingRecipe, seed: int, profile: str = "tutorial",
                     root: str | Path | None = None) -> dict[str, Any]:
    """The summary ``matching-<tag>.json`` beside the seed's plain T2VLAD run (shipped, or trained here: the
    dual run first when its weights are missing; a joint recipe trains its own dual encoder)."""
    cfg = system_config("T2VLAD", seed, profile, root or ROOT)
    ensure_trained(cfg, None, progress=False, need_model=False)
    path = recipe.summary_path(cfg.run_dir())
    if not path.exists() and not install_extra(cfg, path.name):  # a run installed before it was shipped
        ensure_trained(cfg, None, progress=False)
        dual = None if recipe.joint else cfg.run_dir() / "best.pt"  # a joint recipe trains its own
        train_matching(cfg, dual, recipe, out=path.with_suffix(".pt"))
    return {**json.loads(path.read_text()), "plain": read_results(cfg.run_dir())["test"]}


def _val_r1(s: dict[str, Any], weight: float, k: int | None = None) -> float:
    """Validation t2v R@1 at fusion weight w (w = 0: the dual order) and depth k, from the summary's grid."""
    return next(r["t2v_R1"] for r in s["validation_grid"] if r["weight"] == weight and k in (None, r["k"]))


def reranker_results(recipes: dict[str, tuple[MatchingRecipe, tuple[int, ...]]] | None = None,
                     profile: str = "tutorial", root: str | Path | None = None
                     ) -> tuple[pd.DataFrame, dict[str, Verdict]]:
    """One row per recipe and seed: validation R@1 of the dual order, of the head alone (k = 10, w = 1) and
    re-ranked at the chosen k and w, test t2v R@1 of plain T2VLAD, test R@1/5/10 re-ranked, ms per query (the
    dual query plus k head passes) and its multiple of the dual query; and, for every recipe with >= 2 seeds,
    the verdict "re-ranked beats plain T2VLAD" at test t2v R@1."""
    recipes = RERANKERS if recipes is None else recipes
    rows, summaries = [], {}
    for name, (recipe, seeds) in recipes.items():
        for seed in seeds:
            s = summaries[name, seed] = reranker_summary(recipe, seed, profile, root)
            head_ms = 1000 * s["rerank_seconds_by_k"][str(s["k"])]
            dual_ms = 1000 * s["dual_seconds_per_query"]
            rows.append({"recipe": name, "seed": seed, "val R@1: dual": _val_r1(s, 0.0),
                         "head alone": _val_r1(s, 1.0, 10),
                         "re-ranked": s["per_k"][str(s["k"])]["val_R1"],
                         "k": s["k"], "w": s["weight"],
                         "test R@1: T2VLAD": s["plain"]["t2v_R1"], "re-ranked R@1": s["reranked"]["t2v_R1"],
                         "R@5": s["reranked"]["t2v_R5"], "R@10": s["reranked"]["t2v_R10"],
                         "ms per query": dual_ms + head_ms, "x dual": 1 + head_ms / dual_ms})
    table = pd.DataFrame(rows).set_index(["recipe", "seed"])
    verdicts = {}
    for name, (_, seeds) in recipes.items():
        if len(seeds) < 2:
            continue
        mine = [summaries[name, seed] for seed in seeds]
        plain = [_plain_ranks(summaries, seed) for seed in seeds]
        if all(s.get("test_ranks") for s in mine) and all(r is not None for r in plain):
            verdicts[name] = paired_verdict(plain, [s["test_ranks"]["reranked"] for s in mine])
        else:  # summaries written before the per-query ranks were kept
            verdicts[name] = seed_verdict([s["plain"]["t2v_R1"] for s in mine],
                                          [s["reranked"]["t2v_R1"] for s in mine], SIZES_FULL["test"])
    return table, verdicts


def _plain_ranks(summaries: dict[tuple[str, int], dict[str, Any]], seed: int) -> list[float] | None:
    """Plain T2VLAD's per-query test ranks of ``seed``: the dual ranks a frozen re-ranker kept."""
    return next((s["test_ranks"]["dual"] for (_, sd), s in summaries.items()
                 if sd == seed and s.get("test_ranks") and not s["recipe"].get("joint")), None)


def write_rerankers(path: str | Path, table: pd.DataFrame, verdicts: dict[str, Verdict]) -> None:
    """``docs/results/rerankers.md``: per recipe the mean over its seeds (the README's copy: query cost as a
    multiple of the dual query's, a ratio timed side by side; milliseconds depend on the machine and its
    load), every seed's row, and the verdicts."""
    means = table.groupby(level="recipe", sort=False).mean()
    means.insert(0, "seeds", table.groupby(level="recipe", sort=False).size())
    means["Δ R@1 per seed"] = [", ".join(f"{d:+.1f}" for d in (g["re-ranked R@1"] - g["test R@1: T2VLAD"]))
                               for _, g in table.groupby(level="recipe", sort=False)]
    short = means[["seeds", "test R@1: T2VLAD", "re-ranked R@1", "Δ R@1 per seed", "R@5", "R@10", "x dual"]]
    rows = [{"recipe": name, "Δ per seed": ", ".join(f"{d:+.1f}" for d in v.deltas),
             "mean Δ": round(v.mean, 2),
             "95% interval": f"[{v.low:+.1f}, {v.high:+.1f}]", "interval": v.interval,
             "sign-test p": round(v.sign_p, 3), "reading": v.reading} for name, v in verdicts.items()]
    lines = ["# Re-ranking T2VLAD's top k on DigitClips (notebook 11)", "",
             "## Profile `tutorial`, test split (1000 text queries); k and w chosen on validation", "",
             "### Per recipe: mean over its seeds (x dual: a query's cost, the dual query plus k head passes,"
             " as a multiple of the dual query's, timed side by side)", "",
             markdown_table(_rounded(short), "recipe"), "",
             "### Every seed", "", markdown_table(_rounded(table.reset_index(level="seed")), "recipe"), "",
             "### Verdicts: the re-ranked order beats plain T2VLAD, test t2v R@1", "",
             markdown_table(pd.DataFrame(rows).set_index("recipe"))]
    Path(path).write_text("\n".join(lines) + "\n")


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in out.columns:
        if col in ("ms per query", "x dual"):
            out[col] = out[col].map(lambda x: f"{x:.1f}" if x >= 10 else f"{x:.2f}")
        elif out[col].dtype.kind == "f":
            out[col] = out[col].round(1)
    return out.astype(object)
