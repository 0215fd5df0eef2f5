"""Layer 5, course: what the notebooks need and nothing else needs. This file lists the runs they read, and
gives them ``train_or_load`` / ``ensure_trained`` with the shipped runs registered as a source (``shipped``).

Submodules: ``ablate`` (the paper's ablations and their verdicts), ``beyond`` (notebook 10's comparison),
``rerankers`` (notebook 11's re-rankers over seeds), ``figures`` (notebook 00's course map), ``shipped`` (runs
shipped in the repository), ``style`` (the one figure style), ``checks`` (the exercises' checks), and the two
builders of ``docs/teaching.md``: ``website`` (``make site``) and ``student`` (``make student``, the student
edition).

Notebook 07 trains the paper's ablations (``ablate.ablate``) in ``runs/ablations/``, notebook 10 its systems
(``beyond.compare``) in the same root; notebooks 06 and 08 ask for two of the same configs (the full model and
global-only training of seed 0) under other directory names, and a run is found by its config's fingerprint,
not by its directory. :func:`run_configs` lists every run of notebooks 07 and 10 in normal mode;
:func:`regenerate` (``make shipped``, ``python -m t2vlad_lib.course``) trains what is missing and packs
``shipped_runs/`` (``shipped.pack``): the summaries of every run (config, results, history, and notebook 10's
query times and re-ranker summaries) and float16 weights of the runs whose model a notebook reloads
(:data:`CHECKPOINTS`). ``tests/test_shipped.py`` checks that the shipped files still match these configs,
``tests/e2e/test_shipped_weights.py`` that the shipped weights give their recorded metrics.
"""

from __future__ import annotations

from pathlib import Path

from ..engine.config import TrainConfig
from ..engine.train import ensure_trained, train_or_load
from . import ablate, reproducibility
from .ablate import LOSSES, TABLE4, TABLE5, TEST_ONLY_KEYS, VARIANTS, sweep, variant_config, without_defaults
from .beyond import FINETUNED, SYSTEMS, compare, system_config
from .shipped import pack

__all__ = ["ensure_trained", "train_or_load", "PROFILE",
           "SEEDS", "TABLE5_SEEDS", "K_VALUES", "GHOSTS", "ROOT", "CHECKPOINTS", "sweeps",
           "run_configs", "regenerate"]

PROFILE = ablate.PROFILE  # "tutorial": its runs sit at ROOT/<variant>/seed<n>, the shipped runs' names
SEEDS = (0, 1, 2)
TABLE5_SEEDS = (0, 1, 2, 3, 4)  # Table 5's gaps are about a point: notebook 07 gives its rows five seeds
K_VALUES = (4, 9, 16, 32)
GHOSTS = (0, 1)
ROOT = Path(__file__).resolve().parents[2] / "runs" / "ablations"  # notebook 07's RUNS in normal mode
# runs whose weights a notebook reloads: the full model of seeds 0-2 (06, 07 sec. 3, the test-time rows of
# Table 4, 08) and global-only training of seed 0 (08's Figure 4)
CHECKPOINTS = frozenset({"base/seed0", "base/seed1", "base/seed2",
                         "terms-global_text_global_from-cls/seed0"})


def sweeps() -> dict[str, tuple[dict, tuple[int, ...]]]:
    """Notebook 07's trained variants (Tables 4 and 5, the K and ghost sweeps, the losses of section 7):
    name -> (overrides, seeds). Test-time rows reuse their base; a row equal to the profile is the base."""
    out = {name: (VARIANTS[name], TABLE5_SEEDS if name in TABLE5 else SEEDS)
           for name in dict.fromkeys(TABLE4 + TABLE5)}
    rows = {**sweep("model.num_clusters", list(K_VALUES)), **sweep("model.ghost_clusters", list(GHOSTS)),
            **LOSSES}
    # a row with the profile's own K, ghost count or loss is the full model's run, listed above
    out.update({name: (own, SEEDS) for name, o in rows.items() if (own := without_defaults(PROFILE, o))})
    return {k: v for k, v in out.items() if not any(t in v[0] for t in TEST_ONLY_KEYS)}


def run_configs(root: str | Path = ROOT) -> dict[str, TrainConfig]:
    """``"<run directory>/seed<n>"`` (relative to ``root``) -> config of every run of :func:`sweeps` and of
    notebooks 10 and 11's systems (``beyond.SYSTEMS``), seeds :data:`SEEDS`."""
    root = Path(root)
    cfgs = [variant_config(PROFILE, overrides, seed, root, {})
            for overrides, seeds in sweeps().values() for seed in seeds]
    cfgs += [system_config(name, seed, PROFILE, root) for name in SYSTEMS for seed in SEEDS]
    return {str(cfg.run_dir().relative_to(root)): cfg for cfg in cfgs}


def regenerate(root: str | Path = ROOT, progress: bool = True) -> dict:
    """Train (or reuse) every run of :func:`run_configs` under ``root`` (with notebook 10's query times and
    re-rankers), then pack ``shipped_runs/``."""
    root = Path(root)
    for name, (overrides, seeds) in sweeps().items():
        ablate.ablate(PROFILE, seeds=list(seeds), variants={name: overrides}, out_dir=root, progress=progress)
    # notebook 10's table (its systems' query times measured in one set of turns, query.json), then notebook
    # 11's fine-tuned rows (theirs measured in turns with the others, which keep their stored times)
    compare(PROFILE, seeds=list(SEEDS), systems=[n for n in SYSTEMS if n not in FINETUNED], out_dir=root,
            progress=progress)
    compare(PROFILE, seeds=list(SEEDS), systems=["T2VLAD", "CE-style (global only)", *FINETUNED],
            out_dir=root, progress=progress)
    runs = {name: root / name for name in run_configs(root)}
    man = pack(runs, checkpoints=CHECKPOINTS)
    reproducibility.write(man=man)  # docs/reproducibility.md: where each shipped run was trained
    return man

