"""The paper's ablations (Tables 4 and 5) and sweeps, run through the one trainer, with a run cache.

    table = ablate("tutorial", seeds=[0, 1, 2])                # Table 4 + Table 5 variants
    table = ablate("tutorial", variants=sweep("model.num_clusters", [4, 8, 16, 32]))

Every (variant, seed) run writes ``results.json`` in its own run directory,
``<out_dir>/[<profile>-<hash of extra>/]<variant>/seed<seed>`` (the middle part for any profile but
:data:`PROFILE` or with ``extra`` overrides, so a ``--profile fast`` or ``--set`` sweep never lands on the
course's runs); a later call with the same config finds it and does not train again, so an interrupted
sweep continues where it stopped (``train.ensure_trained``: a run of another config or data is refused).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.checkpoint import atomic_write_text
from ..core.stats import Verdict, seed_verdict
from ..data.digitclips import read_attributes
from ..engine.config import TrainConfig, load_config, lookup
from ..engine.evaluate import evaluate
from ..engine.pipeline import prepare
from ..engine.runs import load_run, read_results
from ..engine.train import ensure_trained
from ..extensions.specialisation import specialisation

__all__ = [
    "PROFILE",
    "VARIANTS",
    "TABLE4",
    "TABLE5",
    "PAPER",
    "LOSSES",
    "sweep",
    "without_defaults",
    "ablate",
    "summarize",
    "run_variant",
    "variant_config",
    "markdown_table",
    "verdict",
    "verdict_table",
    "claim_verdicts",
    "DIAGNOSIS",
    "PORT_RECIPE",
    "diagnose",
    "shared_data",
    "DIAGNOSIS_COLUMNS",
    "TEST_ONLY_KEYS",
    "diagnosis_summary",
]

PROFILE = "tutorial"  # the course's profile: its sweeps without extra overrides sit at <out_dir>/<variant>/

# name -> config overrides. Rows of the paper's Table 4 (global-local) and Table 5 (VLAD sharing).
# "test_terms" is no config key: the similarity terms the row evaluates its trained run with (TEST_ONLY_KEYS).
VARIANTS: dict[str, dict[str, Any]] = {
    "full (shared VLAD)": {},
    "w/o global at test": {"test_terms": "local"},
    "w/o local at test": {"test_terms": "global"},
    "global-only training ([CLS])": {"model.terms": "global", "model.text_global_from": "cls"},
    "local-only training": {"model.terms": "local"},
    "text-only VLAD": {"model.vlad.kind": "text_only"},
    "two separate VLADs": {"model.vlad.kind": "separate"},
}
TABLE4 = [
    "full (shared VLAD)",
    "w/o global at test",
    "w/o local at test",
    "global-only training ([CLS])",
    "local-only training",
]
TABLE5 = ["text-only VLAD", "two separate VLADs", "full (shared VLAD)"]

# The paper's MSRVTT 1k-A text->video numbers (R1, R5, R10) for the rows we rerun; None = not reported.
PAPER: dict[str, tuple[float, float, float] | None] = {
    "full (shared VLAD)": (29.5, 59.0, 70.1),
    "w/o global at test": (24.3, 51.5, 63.4),
    "w/o local at test": None,
    "global-only training ([CLS])": (22.2, 49.9, 64.6),
    "local-only training": None,  # "the loss can not converge"
    "text-only VLAD": (27.4, 57.3, 68.2),
    "two separate VLADs": (28.6, 58.1, 70.4),
}

# One factor at a time around the port's recipe: what makes the shared centers specialise on video?
# The port L2-normalises every projected expert token; the profiles do not since the diagnosis (that factor
# moved specialisation most), so the port's recipe states it and every row changes one thing from there.
PORT_RECIPE: dict[str, Any] = {"model.token_norm": True}
DIAGNOSIS: dict[str, dict[str, Any]] = {
    "port recipe": PORT_RECIPE,
    "video assignment trainable": {**PORT_RECIPE, "model.vlad.video_assignment": "trainable"},
    "one BatchNorm for both": {**PORT_RECIPE, "model.vlad.bn": "shared"},
    "no BatchNorm (bias)": {**PORT_RECIPE, "model.assignment": "bias"},
    "no per-token L2": {"model.token_norm": False},
    "max-margin loss (paper)": {**PORT_RECIPE, "loss.name": "max_margin", "loss.margin": 0.02},
    "K = 16": {**PORT_RECIPE, "model.num_clusters": 16},
    "no self-attention": {**PORT_RECIPE, "model.attention_layers": 0},
    "no self-attention, no per-token L2": {"model.attention_layers": 0, "model.token_norm": False},
    "single-shot clips (data)": {**PORT_RECIPE, "data.shots": 1},
}

# The training loss, one row per loss of ``losses.LOSS_NAMES`` around the profile (notebook 07, section 7):
# the tutorial profile trains with the port's loss, so its row is the full model's run; each other row sets
# the loss's hyper-parameter (the paper's margin; InfoNCE at the library's default temperature), none tuned
# here; one more row gives the paper's loss the port's margin, to tell the margin from the averaging.
LOSSES: dict[str, dict[str, Any]] = {
    "hardest negative (port, m = 0.2)": {"loss.name": "hardest", "loss.margin": 0.2},
    "max-margin (paper, m = 0.02)": {"loss.name": "max_margin", "loss.margin": 0.02},
    "max-margin, m = 0.2": {"loss.name": "max_margin", "loss.margin": 0.2},  # the margin or the averaging?
    "InfoNCE (tau = 0.05)": {"loss.name": "infonce", "loss.temperature": 0.05},
}

# Variant keys that act at test time only (``evaluate(..., terms=...)``): the row reuses its base's run.
TEST_ONLY_KEYS = ("test_terms",)


def sweep(key: str, values: list[Any], base: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Variants ``{"key=value": {key: value, **base}}`` for a one-parameter sweep."""
    return {f"{key.split('.')[-1]}={v}": {**(base or {}), key: v} for v in values}


def without_defaults(profile: str | Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` without the keys whose value is already the profile's: a row that restates the profile's
    own setting (the tutorial's loss in :data:`LOSSES`) is then the full model's run, not a new training."""
    raw = load_config(profile).to_dict()

    def value(key: str) -> Any:
        try:
            return lookup(raw, key)
        except KeyError:
            raise KeyError(f"override {key!r}: profile {profile!r} has no such key") from None

    return {k: v for k, v in overrides.items() if value(k) != v}


def _config(
    profile: str | Path, overrides: dict[str, Any], seed: int, extra: dict[str, Any] | None
) -> TrainConfig:
    over = {**(extra or {}), **overrides, "seed": seed}
    return load_config(profile, over)


def _run_name(overrides: dict[str, Any]) -> str:
    train_keys = {k: v for k, v in sorted(overrides.items()) if k not in TEST_ONLY_KEYS}
    return "base" if not train_keys else "_".join(f"{k.split('.')[-1]}-{v}" for k, v in train_keys.items())


def _group(profile: str | Path, extra: dict[str, Any] | None) -> str:
    """The directory of a sweep's runs under its root: "" for the course's profile without extra overrides,
    else ``<profile>[-<6 hex of the extra overrides>]``."""
    if str(profile) == PROFILE and not extra:
        return ""
    if not extra:
        return Path(profile).stem
    tag = hashlib.sha1(json.dumps(extra, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{Path(profile).stem}-{tag}"


def variant_config(
    profile: str | Path,
    overrides: dict[str, Any],
    seed: int,
    root: Path,
    extra: dict[str, Any] | None = None,
    run_name: str | None = None,
) -> TrainConfig:
    """The training config of a variant: test-time-only keys dropped, run directory
    ``root/[<profile>-<hash of extra>/]<run_name or a name made of the overrides>/seed<seed>`` (module
    docstring)."""
    train_over = {k: v for k, v in overrides.items() if k not in TEST_ONLY_KEYS}
    out = Path(root) / _group(profile, extra) / (run_name or _run_name(overrides)) / f"seed{seed}"
    return _config(profile, {**train_over, "out_dir": str(out)}, seed, extra)


def shared_data(cache: dict[str, Any], cfg: TrainConfig, verbose: bool = False):
    """The prepared data of ``cfg``, shared through ``cache`` by every run whose data and text sections are
    equal (and, with caption noise, whose seed is: the swapped captions depend on it)."""
    raw = cfg.to_dict()
    key = json.dumps({"data": raw["data"], "text": raw["text"],
                      "seed": cfg.seed if cfg.data.caption_noise else None}, sort_keys=True)
    if key not in cache:
        cache[key] = prepare(cfg, verbose=verbose)
    return cache[key]


def run_variant(
    profile: str | Path,
    overrides: dict[str, Any],
    seed: int,
    root: Path,
    extra: dict[str, Any] | None = None,
    progress: bool = False,
    data=None,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Train (or load from the cache) one variant and seed (``train.ensure_trained``); return its test
    metrics. Test-time-only variants reuse the trained run of their base and re-evaluate its best checkpoint.
    """

    cfg = variant_config(profile, overrides, seed, root, extra, run_name)
    terms = overrides.get("test_terms")  # a test-time row: its base run, scored with these terms
    ensure_trained(cfg, data, need_model=terms is not None, progress=progress)
    if terms is None:
        return read_results(cfg.run_dir())["test"]
    run = load_run(cfg.run_dir(), data=data, cfg=cfg)
    return evaluate(run.model, run.data.test, cfg.eval_batch_size, terms=terms)


def ablate(
    profile: str | Path = "tutorial",
    seeds: list[int] | tuple[int, ...] = (0, 1, 2),
    variants: dict[str, dict[str, Any]] | list[str] | None = None,
    out_dir: str | Path = "runs/ablations",
    extra: dict[str, Any] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run variants x seeds (cached), write ``results.csv`` and ``results.md`` (mean and std), return
    the per-run long table (columns: variant, seed, t2v_R1, ..., v2t_MeanR).

    Args:
        variants: names of :data:`VARIANTS`, or a dict name -> overrides; default Table 4 + Table 5.
        extra: overrides applied to every variant (e.g. ``{"epochs": 5}``).
    """

    if variants is None:
        variants = list(dict.fromkeys(TABLE4 + TABLE5))
    if isinstance(variants, list):
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; valid: {list(VARIANTS)}")
        variants = {v: VARIANTS[v] for v in variants}
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    cache: dict[str, Any] = {}
    rows = []
    for seed in seeds:  # seed-major: an interrupted sweep already has every variant of the first seeds
        for name, overrides in variants.items():
            data = shared_data(cache, variant_config(profile, overrides, seed, root, extra), progress)
            metrics = run_variant(profile, overrides, seed, root, extra, progress=progress, data=data)
            rows.append({"variant": name, "seed": seed, **metrics})
            _write_tables(pd.DataFrame(rows), root)  # after every run: an interrupted sweep leaves its table
            if progress:
                print(
                    f"{name:32s} seed {seed}: t2v R1 {metrics['t2v_R1']:.1f}  v2t R1 {metrics['v2t_R1']:.1f}"
                )
    return pd.DataFrame(rows)


def _write_tables(table: pd.DataFrame, root: Path) -> None:
    """``results.csv`` (one row per variant and seed) and ``results.md`` (mean ± std over seeds)."""
    atomic_write_text(root / "results.csv", table.to_csv(index=False))
    summary = summarize(table)
    atomic_write_text(root / "results.md", markdown_table(summary) + "\n")


def summarize(
    table: pd.DataFrame,
    columns: tuple[str, ...] = (
        "t2v_R1",
        "t2v_R5",
        "t2v_R10",
        "t2v_MedR",
        "v2t_R1",
        "v2t_R5",
        "v2t_R10",
        "v2t_MedR",
    ),
    by: str = "variant",
    digits: int = 1,
) -> pd.DataFrame:
    """"mean ± std" strings per ``by`` group (in the order groups first appear) and a ``seeds`` column.

    std is the sample standard deviation over seeds (ddof 1); a group of one seed shows its value alone.
    """
    order = list(dict.fromkeys(table[by]))
    grouped = table.groupby(by, sort=False)[list(columns)]
    mean, std = grouped.mean().loc[order], grouped.std(ddof=1).loc[order]
    fmt = lambda v: f"{v:.{digits}f}"  # noqa: E731
    out = mean.map(fmt).where(std.isna(), mean.map(fmt) + " ± " + std.map(fmt))
    out.insert(0, "seeds", table.groupby(by, sort=False).size().loc[order])
    return out


def verdict(margins) -> str:
    """A claim judged from its per-seed margins (> 0 where the claim holds at that seed): "holds" when every
    seed agrees, "reversed" when every seed disagrees, else "cannot tell" (a tie agrees with neither); a
    single seed cannot tell."""
    m = pd.Series(margins, dtype=float)
    if len(m) < 2:
        return "one seed: cannot tell"
    if (m > 0).all():
        return "holds"
    return "reversed" if (m < 0).all() else "cannot tell"


def verdict_table(verdicts: dict[str, Verdict]) -> pd.DataFrame:
    """One row per claim (``claim -> Verdict`` of ``core.stats``): the per-seed deltas, their mean, the 95 %
    interval of the mean and its kind, the one-sided sign-test p and the reading, rounded for display."""
    rows = [{"claim": claim, "Δ per seed": ", ".join(f"{d:+.1f}" for d in v.deltas),
             "mean Δ": round(v.mean, 1), "95% interval": f"[{v.low:+.1f}, {v.high:+.1f}]",
             "interval": v.interval, "sign-test p": round(v.sign_p, 3), "reading": v.reading}
            for claim, v in verdicts.items()]
    return pd.DataFrame(rows).set_index("claim")


def claim_verdicts(table: pd.DataFrame, claims: list[tuple[str, str, str]], n_queries: int,
                   metric: str = "t2v_R1", by: str = "variant") -> dict[str, Verdict]:
    """``claim -> seed_verdict`` of each ``(claim, a, b)``: "b beats a" at ``metric`` (percent), from the
    per-seed values of the long ``table`` (columns ``by``, seed, ``metric``) at the seeds both rows have,
    scored on the same ``n_queries`` test queries."""
    piv = table.pivot_table(index="seed", columns=by, values=metric)
    out = {}
    for claim, a, b in claims:
        both = piv[[a, b]].dropna()
        out[claim] = seed_verdict(both[a].to_numpy(), both[b].to_numpy(), n_queries)
    return out


def markdown_table(frame: pd.DataFrame, index_name: str | None = None) -> str:
    """A DataFrame as a GitHub markdown table (index first), without the optional ``tabulate`` package."""
    head = [index_name or frame.index.name or "", *map(str, frame.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = zip(frame.index, frame.values, strict=True)
    lines += ["| " + " | ".join(map(str, [idx, *row])) + " |" for idx, row in rows]
    return "\n".join(lines)


def diagnose(
    profile: str | Path = "tutorial",
    seeds: list[int] | tuple[int, ...] = (0, 1, 2),
    variants: dict[str, dict[str, Any]] | None = None,
    out_dir: str | Path = "runs/diagnosis",
    extra: dict[str, Any] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Train (cached) each variant x seed like :func:`ablate` and measure how its centers specialise
    (:func:`specialisation.specialisation` on the test set); write ``diagnosis.csv`` in ``out_dir`` after
    every run and return the long table (variant, seed, test metrics, the specialisation summary)."""

    variants = DIAGNOSIS if variants is None else variants
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    cache: dict[str, Any] = {}
    rows = []
    for seed in seeds:
        for name, overrides in variants.items():
            cfg = variant_config(profile, overrides, seed, root, extra)
            data = shared_data(cache, cfg, progress)
            metrics = run_variant(profile, overrides, seed, root, extra, progress=progress, data=data)
            model = load_run(cfg.run_dir(), data=data, cfg=cfg).model
            specs = read_attributes(data.root)["specs"]
            spec = specialisation(model, data, specs, seed=seed).summary()
            rows.append({"variant": name, "seed": seed, **metrics, **spec})
            atomic_write_text(root / "diagnosis.csv", pd.DataFrame(rows).to_csv(index=False))
            if progress:
                print(f"{name:28s} seed {seed}: t2v R1 {metrics['t2v_R1']:.1f}  content NMI "
                      f"{spec['content_nmi']:.3f}  >= 2 appearance centers {spec['multi_appearance']:.2f}")
    return pd.DataFrame(rows)


DIAGNOSIS_COLUMNS = ("t2v_R1", "content_nmi", "content_nmi_chance", "multi_appearance", "contents_appearance",
                     "text_nmi")


def diagnosis_summary(table: pd.DataFrame, base: str = "port recipe") -> pd.DataFrame:
    """One row per variant: mean ± std of :data:`DIAGNOSIS_COLUMNS` (those present), and the paired per-seed
    change against ``base`` of test R@1 and of the appearance content NMI with its :func:`verdict` (does
    the factor raise it at every seed?)."""
    columns = tuple(c for c in DIAGNOSIS_COLUMNS if c in table.columns)
    out = summarize(table, columns=columns, by="variant", digits=3)
    out["t2v_R1"] = summarize(table, columns=("t2v_R1",), by="variant", digits=1)["t2v_R1"]
    ref = table[table.variant == base].set_index("seed")
    for col, digits in (("t2v_R1", 1), ("content_nmi", 3)):
        deltas, verdicts = [], []
        for name in out.index:
            d = (table[table.variant == name].set_index("seed")[col] - ref[col]).dropna()
            seeds = " / ".join(f"{v:+.{digits}f}" for v in d)
            deltas.append("-" if name == base else f"{d.mean():+.{digits}f} ({seeds})")
            verdicts.append("-" if name == base else verdict(d.values))
        out[f"Δ {col} per seed"] = deltas
        out[f"raises {col}?"] = verdicts
    return out
