"""Beyond T2VLAD: the paper's baselines, CLIP2TV's matching re-rank and similarity distillation, measured
on one data set with one budget (notebook 10).

    table = compare("tutorial", seeds=[0, 1, 2])     # one row per system and seed

Every system is the trainer's profile plus config overrides (:data:`SYSTEMS`), trained and cached by
:func:`ablate.run_variant` in the same run root as the ablations, so T2VLAD and the CE-style model are the
very runs of Table 4. Two steps come on top of a trained T2VLAD of the same seed:

* ``rerank``: a CLIP2TV-style matching head (:func:`matching.train_matching`) re-ranks the dual encoder's
  test top-k; its checkpoint ``matching-k<k>.pt`` and ``matching-k<k>.json`` (losses, metrics, costs: what
  the table reads) sit beside that run's ``best.pt``.
* ``teacher``: similarity distillation (:mod:`distill`) from the frozen ``best.pt`` of the named system
  (same seed), e.g. T2VLAD trained on the same noisy captions.

Columns: test metrics both ways, trainable parameters (the frozen text encoder is shared by all and not
counted), training seconds (the system's own run; a distilled student does not count its teacher's), and
seconds per query: encode the query and score it against a pre-encoded gallery (:func:`query_seconds`, all
models in turns), plus, for the re-rank, the k head passes of :class:`matching.MatchingResult` (timed when the
head was trained).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from .ablate import VARIANTS, run_variant, shared_data, variant_config
from .checkpoint import atomic_write_text

__all__ = ["System", "SYSTEMS", "NOISE", "compare", "query_seconds", "trainable_parameters"]

NOISE = 0.2  # the fraction of training captions swapped with another video's for the noisy rows


@dataclass
class System:
    """overrides: config keys of its dual-encoder run. rerank: re-rank its top-k with a matching head.
    teacher: the name of the system whose ``best.pt`` (same seed) is the frozen distillation teacher."""

    overrides: dict[str, Any] = field(default_factory=dict)
    rerank: bool = False
    teacher: str | None = None


_NOISY = {"data.caption_noise": NOISE}
SYSTEMS: dict[str, System] = {
    "mean pooling (InfoNCE)": System({"arch": "meanpool", "loss.name": "infonce"}),
    # arch "ce" is this preset (baselines.ARCH_PRESETS); spelt out, it shares Table 4's trained run
    "CE-style (global only)": System(VARIANTS["global-only training ([CLS])"]),
    "MMT-style": System({"arch": "mmt"}),
    "T2VLAD": System({}),
    "T2VLAD + matching re-rank": System({}, rerank=True),
    "T2VLAD + distillation": System({"distill.weight": 1.0}, teacher="T2VLAD"),
    f"T2VLAD, {NOISE:.0%} noisy captions": System(_NOISY),
    f"T2VLAD + distillation, {NOISE:.0%} noisy": System(
        {**_NOISY, "distill.weight": 1.0}, teacher=f"T2VLAD, {NOISE:.0%} noisy captions"
    ),
}


def trainable_parameters(model: nn.Module) -> int:
    """Parameters that training updates (a frozen text encoder is excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def query_seconds(
    models: dict[str, tuple[nn.Module, Any]], batch_size: int = 256, rounds: int = 5
) -> dict[str, float]:
    """Seconds per text query of each ``name -> (model, evalset)``: encode the N_q queries and score them
    against the N_v gallery videos, encoded beforehand and not timed (as an index holds them), top-10
    included. The models take turns round after round and each gets its median over ``rounds``, so a
    change of machine load affects all of them alike (timing one model after another does not)."""
    from .evaluate import encode_texts, encode_videos, similarity_matrix

    modes = {name: model.training for name, (model, _) in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    try:
        galleries = {}
        for name, (model, evalset) in models.items():
            model.eval()
            galleries[name] = encode_videos(model, evalset.videos, batch_size)
        for _ in range(rounds):
            for name, (model, evalset) in models.items():
                t0 = time.perf_counter()
                queries = encode_texts(model, evalset.texts, batch_size)
                sims = similarity_matrix(model, queries, galleries[name])
                sims.topk(min(10, sims.shape[1]), dim=1)
                times[name].append((time.perf_counter() - t0) / len(evalset.texts))
    finally:
        for name, (model, _) in models.items():
            model.train(modes[name])
    return {name: float(torch.tensor(t).median()) for name, t in times.items()}


def _run_name(name: str) -> str:
    return "sys-" + "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def _measure(cfg, data, metrics: dict[str, float]) -> tuple[dict[str, Any], nn.Module]:
    """Metrics + parameters and training seconds (``results.json``) of a trained run, and its model."""
    from .runs import load_run

    run = load_run(cfg.run_dir(), data=data, cfg=cfg)
    row = {**metrics, "params": trainable_parameters(run.model), "train_seconds": run.results["seconds"]}
    return row, run.model


def _rerank(cfg, data, row: dict[str, Any], k: int) -> dict[str, Any]:
    """Train (or load) a matching head on ``cfg``'s best.pt; ``row`` with t2v re-ranked (v2t stays the
    dual encoder's), the head's parameters and training seconds added, and ``rerank_seconds``: its k head
    passes per query, timed when the head was trained."""
    from .matching import train_matching

    best = cfg.run_dir() / "best.pt"
    path = best.with_name(f"matching-k{k}.json")  # written by train_matching beside its checkpoint
    if not path.exists():
        train_matching(cfg, best, k=k, data=data, out=path.with_suffix(".pt"))
    summary = json.loads(path.read_text())
    return {
        **row,
        **summary["reranked"],
        "params": row["params"] + summary["head_params"],
        "train_seconds": row["train_seconds"] + summary["train_seconds"],
        "rerank_seconds": summary["rerank_seconds_per_query"],
    }


def compare(
    profile: str | Path = "tutorial",
    seeds: list[int] | tuple[int, ...] = (0, 1, 2),
    systems: list[str] | None = None,
    out_dir: str | Path = "runs/ablations",
    extra: dict[str, Any] | None = None,
    k: int = 10,
    progress: bool = True,
) -> pd.DataFrame:
    """Train (cached) and measure ``systems`` (names of :data:`SYSTEMS`, default all) x ``seeds``; write
    ``systems.csv`` in ``out_dir`` and return the long table (one row per system and seed: system, seed,
    t2v_R1 ... v2t_MeanR, params, train_seconds, query_seconds). Query times are measured at the end, all
    models taking turns (:func:`query_seconds`); a re-rank row adds its head's cost to its dual encoder's.

    ``out_dir`` is the ablations' run root by default, so runs both need are trained once.
    """

    names = list(SYSTEMS) if systems is None else list(systems)
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}; valid: {list(SYSTEMS)}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    prepared: dict[str, Any] = {}  # data per data section (and seed, with caption noise): ablate.shared_data

    def overrides(name: str, seed: int) -> tuple[dict[str, Any], str | None]:
        system = SYSTEMS[name]
        if system.teacher is None:
            return dict(system.overrides), None
        t_over, t_name = overrides(system.teacher, seed)
        teacher = variant_config(profile, t_over, seed, root, extra, t_name)
        # a path in a directory name would nest directories: a distilled run is named after its system
        return {**system.overrides, "distill.teacher": str(teacher.run_dir() / "best.pt")}, _run_name(name)

    def run(name: str, seed: int):
        over, run_name = overrides(name, seed)
        cfg = variant_config(profile, over, seed, root, extra, run_name)
        data = shared_data(prepared, cfg)
        metrics = run_variant(profile, over, seed, root, extra, progress, data, run_name)
        return cfg, data, metrics

    rows, models = [], {}
    for seed in seeds:
        for name in names:
            teacher = SYSTEMS[name].teacher
            if teacher is not None:
                run(teacher, seed)  # the teacher's run first (cached when already trained)
            cfg, data, metrics = run(name, seed)
            row, model = _measure(cfg, data, metrics)
            models[(name, seed)] = (model, data.test)
            if SYSTEMS[name].rerank:
                row = _rerank(cfg, data, row, k)
            rows.append({"system": name, "seed": seed, **row})
            if progress:
                print(f"{name:36s} seed {seed}: t2v R1 {row['t2v_R1']:.1f}  v2t R1 {row['v2t_R1']:.1f}")
    times = query_seconds(models, cfg.eval_batch_size)
    for row in rows:
        row["query_seconds"] = times[(row["system"], row["seed"])] + row.pop("rerank_seconds", 0.0)
    table = pd.DataFrame(rows)
    atomic_write_text(root / "systems.csv", table.to_csv(index=False))
    return table
