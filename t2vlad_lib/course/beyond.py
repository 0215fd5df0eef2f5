"""Beyond T2VLAD: the paper's baselines, CLIP2TV's matching re-rank and similarity distillation, measured
on one data set with one budget (notebook 10).

    table = compare("tutorial", seeds=[0, 1, 2])     # one row per system and seed

Every system is the trainer's profile plus config overrides (:data:`SYSTEMS`), trained and cached by
:func:`ablate.run_variant` in the same run root as the ablations, so T2VLAD and the CE-style model are the
very runs of Table 4. Two steps come on top of a trained T2VLAD of the same seed:

* ``rerank``: a CLIP2TV-style matching head (:func:`matching.train_matching`) re-ranks the dual encoder's
  test top-k, fused with the dual score (k and the fusion weight chosen on validation); its checkpoint
  ``matching-<recipe>.pt`` and ``matching-<recipe>.json`` (learning curve, choices, metrics, costs: what the
  table reads) sit beside that run's ``best.pt``.
* ``teacher``: similarity distillation (:mod:`distill`) from the frozen ``best.pt`` of the named system
  (same seed), e.g. T2VLAD trained on the same noisy captions.

Columns: test metrics both ways, trainable parameters (a frozen text encoder is shared by all and not
counted; a fine-tuned one is), training seconds (the system's own run; a distilled student does not count its
teacher's), and seconds per query: encode the query and score it against a pre-encoded gallery
(:func:`query_seconds`, the first seed's model of every system, all in turns), plus, for the re-rank, the k
head passes of :class:`matching.MatchingResult` (timed in turns with the dual encoder when the head was
trained). Query times and parameter counts are stored in the first seed's run directory (``query.json``) and
re-used: a table shows one measurement (delete the files to measure again), and a run loaded from its
shipped summary (no weights) keeps the stored values.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..core.checkpoint import atomic_write_text
from ..core.utils import eval_mode, time_in_turns
from ..engine.config import load_config
from ..engine.evaluate import encode_videos, query_topk
from ..engine.runs import load_run, read_results
from ..engine.train import ensure_trained
from ..extensions.matching import RECIPE, MatchingRecipe, train_matching
from .ablate import VARIANTS, shared_data, variant_config
from .shipped import machine

__all__ = ["System", "SYSTEMS", "NOISE", "FINETUNE", "FINETUNED", "finetune_overrides", "system_config",
           "compare", "query_seconds", "trainable_parameters"]

NOISE = 0.2  # the fraction of training captions swapped with another video's for the noisy rows


@dataclass
class System:
    """overrides: config keys of its dual-encoder run. rerank: re-rank its top-k with a matching head.
    teacher: the name of the system whose ``best.pt`` (same seed) is the frozen distillation teacher."""

    overrides: dict[str, Any] = field(default_factory=dict)
    rerank: bool = False
    teacher: str | None = None


def finetune_overrides(profile: str = "tutorial-finetune", frozen: str = "tutorial") -> dict[str, Any]:
    """The ``text.*`` keys in which ``profile`` (MiniLM fine-tuned) differs from ``frozen``: applied to any
    system, they fine-tune its text encoder and change nothing else."""
    a, b = load_config(frozen).to_dict(), load_config(profile).to_dict()
    rest = [k for k in b if k not in ("text", "profile") and a.get(k) != b[k]]
    if rest:
        raise ValueError(f"finetune_overrides: {profile}, {frozen} differ outside the text section: {rest}")
    return {f"text.{k}": v for k, v in b["text"].items() if a["text"].get(k) != v}


FINETUNE = finetune_overrides()
# the systems that fine-tune MiniLM (a training step costs several frozen ones on a CPU): notebook 10's main
# table leaves them out, notebook 12 compares them with their frozen versions
FINETUNED = ("T2VLAD, MiniLM fine-tuned", "CE-style (global only), MiniLM fine-tuned")
_NOISY = {"data.caption_noise": NOISE}
SYSTEMS: dict[str, System] = {
    "mean pooling (InfoNCE)": System({"arch": "meanpool", "loss.name": "infonce"}),
    # arch "ce" is this preset (baselines.ARCH_PRESETS); spelt out, it shares Table 4's trained run
    "CE-style (global only)": System(VARIANTS["global-only training ([CLS])"]),
    "MMT-style": System({"arch": "mmt"}),
    "T2VLAD": System({}),
    "T2VLAD + matching re-rank": System({}, rerank=True),
    "T2VLAD, MiniLM fine-tuned": System(FINETUNE),
    "CE-style (global only), MiniLM fine-tuned": System(
        {**VARIANTS["global-only training ([CLS])"], **FINETUNE}
    ),
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

    with eval_mode(*(model for model, _ in models.values())):
        calls = {}
        for name, (model, evalset) in models.items():
            gallery = encode_videos(model, evalset.videos, batch_size)
            calls[name] = lambda m=model, e=evalset, g=gallery: query_topk(m, e.texts, g, batch_size)
        seconds = time_in_turns(calls, rounds)
    return {name: seconds[name] / len(evalset.texts) for name, (_, evalset) in models.items()}


def _run_name(name: str) -> str:
    return "sys-" + "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def system_config(
    name: str, seed: int, profile: str | Path = "tutorial", root: str | Path = "runs/ablations",
    extra: dict[str, Any] | None = None,
):
    """The training config of system ``name`` and ``seed`` under ``root`` (its run directory: the ablations'
    name for its overrides, or, for a distilled student, a name made of the system's)."""
    system = SYSTEMS[name]
    if system.teacher is None:
        return variant_config(profile, system.overrides, seed, Path(root), extra)
    teacher = system_config(system.teacher, seed, profile, root, extra)
    # a path in a directory name would nest directories: a distilled run is named after its system
    over = {**system.overrides, "distill.teacher": str(teacher.run_dir() / "best.pt")}
    return variant_config(profile, over, seed, Path(root), extra, _run_name(name))


QUERY_FILE = "query.json"  # params and seconds per query of a system's first-seed run


def compare(
    profile: str | Path = "tutorial",
    seeds: list[int] | tuple[int, ...] = (0, 1, 2),
    systems: list[str] | None = None,
    out_dir: str | Path = "runs/ablations",
    extra: dict[str, Any] | None = None,
    recipe: MatchingRecipe = RECIPE,
    progress: bool = True,
) -> pd.DataFrame:
    """Train (cached) and measure ``systems`` (names of :data:`SYSTEMS`, default all) x ``seeds``; write
    ``systems.csv`` in ``out_dir`` and return the long table (one row per system and seed: system, seed,
    t2v_R1 ... v2t_MeanR, params, train_seconds, query_seconds; re-rank rows also rerank_k, rerank_weight).

    ``out_dir`` is the ablations' run root by default, so runs both need are trained once. A run is trained
    only when neither a finished run nor its shipped summary is there; its model is loaded only to measure
    query times (module docstring).
    """

    names = list(SYSTEMS) if systems is None else list(systems)
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}; valid: {list(SYSTEMS)}")
    if not seeds:
        raise ValueError("compare: no seeds")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    prepared: dict[str, Any] = {}  # data per data section (and seed, with caption noise): ablate.shared_data

    def config(name: str, seed: int):
        return system_config(name, seed, profile, root, extra)

    cfgs = _ensure_runs(names, seeds, config, recipe, prepared, progress)
    stored = _query_files({name: cfgs[(name, seeds[0])] for name in names}, prepared)
    rows = []
    for seed in seeds:
        for name in names:
            cfg = cfgs[(name, seed)]
            results = read_results(cfg.run_dir())
            row = {"system": name, "seed": seed, **results["test"], "params": stored[name]["params"],
                   "train_seconds": results["seconds"], "query_seconds": stored[name]["query_seconds"]}
            if SYSTEMS[name].rerank:
                trained = recipe.summary_path(cfg.run_dir()).exists()
                row = _rerank(cfg, row, recipe, None if trained else shared_data(prepared, cfg))
            rows.append(row)
            if progress:
                print(f"{name:42s} seed {seed}: t2v R1 {row['t2v_R1']:.1f}  v2t R1 {row['v2t_R1']:.1f}")
    table = pd.DataFrame(rows)
    atomic_write_text(root / "systems.csv", table.to_csv(index=False))
    return table


def _ensure_runs(names: list[str], seeds, config: Callable[[str, int], Any], recipe: MatchingRecipe,
                 prepared: dict[str, Any], progress: bool) -> dict[tuple[str, int], Any]:
    """The config of every (system, seed), its run made sure of (``train.ensure_trained``): a model is
    needed for the first seed's query time and size (``query.json``) and for a re-ranking head still to
    train; a distilled student's teacher is made ready (with its model) before the student trains."""
    first = seeds[0]

    def needs_model(name: str, seed: int, cfg) -> bool:
        if seed == first and not (cfg.run_dir() / QUERY_FILE).exists():
            return True  # its query time and size are measured on its model
        # a re-ranking head trains on the dual model
        return SYSTEMS[name].rerank and not recipe.summary_path(cfg.run_dir()).exists()

    def ensure(name: str, seed: int, need_model: bool):
        cfg, teacher = config(name, seed), SYSTEMS[name].teacher
        ensure_trained(  # whether the model is needed is asked once a shipped run brought its files
            cfg, lambda: shared_data(prepared, cfg, progress), progress=progress,
            need_model=lambda: need_model or needs_model(name, seed, cfg),
            before_training=None if teacher is None else lambda: ensure(teacher, seed, True),  # its best.pt
        )
        return cfg

    return {(name, seed): ensure(name, seed, False) for seed in seeds for name in names}


def _query_files(firsts: dict[str, Any], prepared: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``query.json`` (parameters, seconds per query) of each system's first-seed run (``firsts``: name ->
    config): measured for those that have none, in turns with the first-seed model of every other system
    that has one (stored values are kept), then read."""
    missing = [n for n, c in firsts.items() if not (c.run_dir() / QUERY_FILE).exists()]
    if missing:
        lost = [str(firsts[n].run_dir()) for n in missing if not (firsts[n].run_dir() / "best.pt").exists()]
        if lost:
            raise RuntimeError(f"compare: no stored query time ({QUERY_FILE}) and no best.pt to measure "
                               f"it: {lost}")
        models = {}
        for name, cfg in ((n, c) for n, c in firsts.items() if (c.run_dir() / "best.pt").exists()):
            run = load_run(cfg.run_dir(), data=shared_data(prepared, cfg), cfg=cfg, verbose=False)
            models[name] = (run.model, run.data.test)
        seconds = query_seconds(models, next(iter(firsts.values())).eval_batch_size)
        when = {"date": time.strftime("%Y-%m-%d"), "machine": machine(),
                "load_average": round(os.getloadavg()[0], 2)}
        for name, cfg in ((n, firsts[n]) for n in missing):
            info = {"params": trainable_parameters(models[name][0]), "query_seconds": seconds[name], **when}
            atomic_write_text(cfg.run_dir() / QUERY_FILE, json.dumps(info, indent=2))
    return {name: json.loads((cfg.run_dir() / QUERY_FILE).read_text()) for name, cfg in firsts.items()}


def _rerank(cfg, row: dict[str, Any], recipe: MatchingRecipe, data) -> dict[str, Any]:
    """``row`` with t2v re-ranked by a matching head (trained on ``cfg``'s best.pt when its summary is
    missing; v2t stays the dual encoder's), the head's parameters and training seconds added, its k head
    passes per query added to the query time, and the validation-chosen k and fusion weight."""
    path = recipe.summary_path(cfg.run_dir())
    if not path.exists():
        train_matching(cfg, cfg.run_dir() / "best.pt", recipe, data=data, out=path.with_suffix(".pt"))
    summary = json.loads(path.read_text())
    return {
        **row,
        **summary["reranked"],
        "params": row["params"] + summary["head_params"],
        "train_seconds": row["train_seconds"] + summary["train_seconds"],
        "query_seconds": row["query_seconds"] + summary["rerank_seconds_per_query"],
        "rerank_k": summary["k"],
        "rerank_weight": summary["weight"],
    }
