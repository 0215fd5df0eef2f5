"""Shipped runs: the results of every run the notebooks read, in the repository, so that a fresh clone shows
the full-run results in minutes (the download-or-train pattern of the UvA DL notebooks, without a download).

``shipped_runs/`` holds, per run, its ``config.json``, ``results.json`` and ``history.csv`` (a few KB), for
a few runs the notebooks reload also ``best.fp16.pt`` (the validation-selected weights in float16, a
``checkpoint`` file: tensors and plain values, sha256-verified), and one ``manifest.json``: per run its
config *fingerprint*, the code and data versions, date, machine and metrics (and, for a shipped checkpoint,
the test metrics of exactly those float16 weights, which may differ from the float32 run's by a query).

``install(cfg)`` is called by ``train.ensure_trained`` when a run directory is empty: if a shipped run has
the fingerprint of ``cfg`` (the same config, runtime keys aside, on the same DigitClips version) its files
are copied into ``cfg.run_dir()`` and a line says so. ``T2VLAD_RETRAIN=1`` turns this off: everything is
trained. A run shipped without a checkpoint installs as a *summary* (``runs.run_state``): enough for the
tables; a notebook that needs the model trains it.

``pack(run_dirs, checkpoints)`` writes the folder; ``course.regenerate()`` (``make shipped``) retrains or
loads every run of the course and packs it: the one command that regenerates every shipped file.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from ..core.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from ..data.digitclips import VERSION
from ..engine.config import RUNTIME_KEYS, TrainConfig, from_dict
from ..engine.evaluate import evaluate
from ..engine.runs import load_run, read_results, register_run_source

__all__ = ["SHIPPED_DIR", "fingerprint", "retrain", "find", "install", "pack", "manifest", "machine",
           "provenance"]

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "shipped_runs"
SUMMARY_FILES = ("config.json", "results.json", "history.csv")
# small files that other steps write beside a run and the notebooks read: beyond.compare's query times and
# sizes, and matching.train_matching's re-ranker summaries (JSON only: the heads' weights are not shipped)
EXTRA_FILES = ("query.json", "matching-*.json")
CHECKPOINT = "best.fp16.pt"


def _data_version(cfg: TrainConfig) -> str:
    if cfg.data.dataset != "digitclips":
        return f"released:{cfg.data.dataset}"
    return f"digitclips-v{VERSION}"


def fingerprint(cfg: TrainConfig | dict[str, Any]) -> str:
    """sha256 (16 hex) of a config without its runtime-only keys (a distillation teacher counts by its path
    relative to the run), and of the DigitClips version it trains on: equal fingerprints, the same run."""
    cfg = from_dict(cfg) if isinstance(cfg, dict) else cfg
    body = {k: v for k, v in cfg.to_dict().items() if k not in RUNTIME_KEYS}
    if cfg.distill.teacher:  # the teacher's path relative to this run, not where the runs root lies
        teacher = os.path.relpath(cfg.distill.teacher, cfg.run_dir())
        body["distill"] = {**body["distill"], "teacher": teacher}
    text = json.dumps({"config": body, "data_version": _data_version(cfg)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def retrain() -> bool:
    """True when ``T2VLAD_RETRAIN=1`` (or true/yes/on): ignore the shipped runs and train everything."""
    return os.environ.get("T2VLAD_RETRAIN", "0").strip().lower() in {"1", "true", "yes", "on"}


def manifest(root: str | Path = SHIPPED_DIR) -> dict[str, Any]:
    """``manifest.json`` of a shipped folder (``{"runs": {}}`` when there is none)."""
    path = Path(root) / "manifest.json"
    if not path.exists():
        return {"runs": {}}
    return json.loads(path.read_text())


def find(cfg: TrainConfig, root: str | Path = SHIPPED_DIR) -> tuple[str, dict[str, Any]] | None:
    """(name, manifest entry) of the shipped run with ``cfg``'s fingerprint, or None."""
    key = fingerprint(cfg)
    for name, entry in manifest(root)["runs"].items():
        if entry["fingerprint"] == key:
            return name, entry
    return None


def install(cfg: TrainConfig, root: str | Path = SHIPPED_DIR, verbose: bool = True) -> bool:
    """Copy the shipped run of ``cfg`` into ``cfg.run_dir()``; False when there is none (or retraining).

    The config files are rewritten with ``cfg``'s own ``out_dir`` (a runtime key), the float16 weights, if
    shipped, become a float32 ``best.pt`` with the shipped config; ``results.json`` gains ``"shipped"``:
    the manifest entry (date, machine, the float16 weights' test metrics).
    """
    if retrain():
        return False
    hit = find(cfg, root)
    if hit is None:
        return False
    name, entry = hit
    src, run_dir = Path(root) / name, cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    here = cfg.to_dict()
    results = json.loads((src / "results.json").read_text())
    results.update(config=here, shipped={k: v for k, v in entry.items() if k != "config"})
    if (src / CHECKPOINT).exists():
        payload = load_checkpoint(src / CHECKPOINT)
        payload["model"] = {k: v.float() if v.is_floating_point() else v for k, v in payload["model"].items()}
        save_checkpoint(run_dir / "best.pt", {**{k: v for k, v in payload.items() if k != "sha256"},
                                              "config": here})
    shutil.copyfile(src / "history.csv", run_dir / "history.csv")
    for pattern in EXTRA_FILES:
        for extra in sorted(src.glob(pattern)):
            shutil.copyfile(extra, run_dir / extra.name)
    atomic_write_text(run_dir / "config.json", json.dumps(here, indent=2))
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2))
    if verbose:
        what = "run" if (src / CHECKPOINT).exists() else "run summary"
        print(f"loaded the shipped {what} of {entry['date']} ({entry['machine']}) into {run_dir}; "
              "set T2VLAD_RETRAIN=1 to train it yourself")
    return True


def machine() -> str:
    """A short description of this machine: CPU model, cores, torch build."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def provenance(run_dirs: Iterable[str | Path]) -> str:
    """Where and when the finished runs in ``run_dirs`` were trained, for a results file: a shipped run
    carries its manifest's date and machine, a run trained here this machine and its ``results.json``'s date.
    Groups in order of size, e.g. ``"33 runs trained 2026-12-01 on AMD EPYC, 2 cores, ... (shipped)"``."""
    groups: Counter[str] = Counter()
    for run_dir in run_dirs:
        results = read_results(run_dir)
        if results is None:
            raise ValueError(f"provenance: {run_dir} has no results.json; train it first")
        if "shipped" in results:
            groups[f"{results['shipped']['date']} on {results['shipped']['machine']} (shipped)"] += 1
        else:
            day = time.strftime("%Y-%m-%d", time.localtime((Path(run_dir) / "results.json").stat().st_mtime))
            groups[f"{day} on {machine()} (this machine)"] += 1
    return "; ".join(f"{n} run{'s' * (n != 1)} trained {where}" for where, n in groups.most_common())


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parents[2], timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _same_run(entry: dict[str, Any] | None, cfg: TrainConfig, results: dict[str, Any]) -> dict[str, Any]:
    """``entry`` (a previous manifest's) when it describes this very run (same config, same test metrics),
    else ``{}``: a run packed again keeps where and when it was trained."""
    if entry and entry["fingerprint"] == fingerprint(cfg) and entry["test"] == results["test"]:
        return entry
    return {}


def pack(
    runs: dict[str, str | Path],
    checkpoints: set[str] | frozenset[str] = frozenset(),
    root: str | Path = SHIPPED_DIR,
    evaluate_checkpoints: bool = True,
) -> dict[str, Any]:
    """Write the shipped folder: ``runs`` name -> finished run directory (summaries of all), float16 weights
    of the names in ``checkpoints``, and the manifest (replacing the folder's previous content).

    With ``evaluate_checkpoints`` the float16 weights are loaded back and evaluated on the test split, and
    those metrics go to the manifest (``checkpoint_test``): what ``tests/test_shipped.py`` checks.
    """

    root = Path(root)
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    entries: dict[str, Any] = {}
    before = manifest(root)["runs"]  # a run shipped before keeps its date, machine and commit
    when = time.strftime("%Y-%m-%d")
    for name, run_dir in runs.items():
        run_dir = Path(run_dir)
        results = read_results(run_dir)
        if results is None:
            raise ValueError(f"pack: {run_dir} has no results.json; train it first")
        dst = tmp / name
        dst.mkdir(parents=True)
        cfg = from_dict(results["config"])
        for f in SUMMARY_FILES:
            if f == "results.json":  # an installed run's copy of its manifest entry stays in the manifest
                clean = {k: v for k, v in results.items() if k != "shipped"}
                atomic_write_text(dst / f, json.dumps(clean, indent=2))
            else:
                shutil.copyfile(run_dir / f, dst / f)
        for pattern in EXTRA_FILES:
            for extra in sorted(run_dir.glob(pattern)):
                shutil.copyfile(extra, dst / extra.name)
        shipped = results.get("shipped") or _same_run(before.get(name), cfg, results)
        entry = {
            "fingerprint": fingerprint(cfg),
            "profile": cfg.profile,
            "seed": cfg.seed,
            "data_version": _data_version(cfg),
            "code": {"commit": shipped.get("code", {}).get("commit", _commit())},
            "date": shipped.get("date", when),
            "machine": shipped.get("machine", machine()),
            "test": results["test"],
            "val": results.get("val", {}),
            "best_epoch": results.get("best_epoch"),
            "train_seconds": results.get("seconds"),
            "checkpoint": None,
        }
        if name in checkpoints:
            payload = load_checkpoint(run_dir / "best.pt")
            half = {k: v.half() if v.is_floating_point() else v for k, v in payload["model"].items()}
            save_checkpoint(dst / CHECKPOINT, {"model": half, "config": results["config"],
                                               "epoch": payload.get("epoch"), "val": payload.get("val", {}),
                                               "data": payload.get("data")})
            entry["checkpoint"] = CHECKPOINT
            if evaluate_checkpoints:
                run = load_run(dst / CHECKPOINT)
                run.model.float()
                entry["checkpoint_test"] = evaluate(run.model, run.data.test, cfg.eval_batch_size)
        entries[name] = entry
    out = {"format": 1, "runs": entries}
    atomic_write_text(tmp / "manifest.json", json.dumps(out, indent=1) + "\n")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return out


register_run_source(install)  # train.ensure_trained fills an empty run directory from here first
