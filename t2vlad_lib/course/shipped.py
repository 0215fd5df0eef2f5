"""Shipped runs: the results of every run the notebooks read, in the repository, so that a fresh clone shows
the full-run results in minutes (the download-or-train pattern of the UvA DL notebooks, without a download).

``shipped_runs/`` holds, per run, its ``config.json``, ``results.json`` and ``history.csv`` (a few KB), for
a few runs the notebooks reload also ``best.fp16.pt`` (the validation-selected weights in float16, a
``checkpoint`` file: tensors and plain values, sha256-verified), and one ``manifest.json``: per run the
*fingerprint* of its identity (``runs.RunIdentity``: the config, runtime keys aside, and the data, e.g.
``digitclips-v3-full-seed0``), the code version, date, machine and metrics (and, for a shipped checkpoint,
the sha256 of the file and the test metrics of exactly those float16 weights, which may differ from the
float32 run's by a query).

``install(cfg)`` is called by ``train.ensure_trained`` when a run directory is empty: if a shipped run has
the fingerprint of ``cfg`` its files are checked (the weights against the manifest's sha256, the shipped
config and data against ``cfg``'s identity) and copied into ``cfg.run_dir()``, and a line says so.
``T2VLAD_RETRAIN=1`` turns this off: everything is trained. A run shipped without a checkpoint installs as
a *summary* (``runs.inspect_run``): enough for the tables; a notebook that needs the model trains it.

``pack(run_dirs, checkpoints)`` writes the folder; ``course.regenerate()`` (``make shipped``) retrains or
loads every run of the course and packs it: the one command that regenerates every shipped file.
``refresh()`` recomputes the manifest's fingerprints from the shipped configs after the identity's
definition changed (no run changes).
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
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from ..core.checkpoint import CheckpointError, atomic_write_text, load_checkpoint, save_checkpoint
from ..core.utils import env_flag
from ..engine.config import TrainConfig, from_dict
from ..engine.evaluate import evaluate
from ..engine.pipeline import data_identity
from ..engine.runs import (
    inspect_run,
    load_run,
    read_results,
    recorded_data,
    register_run_source,
    run_identity,
)

__all__ = ["SHIPPED_DIR", "fingerprint", "retrain", "find", "install", "install_extra", "pack", "manifest",
           "refresh", "machine", "provenance"]

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "shipped_runs"
REPO = SHIPPED_DIR.parent  # install messages show paths inside the repository from here
SUMMARY_FILES = ("config.json", "results.json", "history.csv")
# small files that other steps write beside a run and the notebooks read: beyond.compare's query times and
# sizes, and matching.train_matching's re-ranker summaries (JSON only: the heads' weights are not shipped)
EXTRA_FILES = ("query.json", "matching-*.json")
CHECKPOINT = "best.fp16.pt"


def fingerprint(cfg: TrainConfig | dict[str, Any]) -> str:
    """The fingerprint of a config's run identity (``runs.RunIdentity``): equal fingerprints, the same run."""
    return run_identity(cfg).fingerprint()


def retrain() -> bool:
    """True when ``T2VLAD_RETRAIN=1`` (or true/yes/on, ``utils.env_flag``): ignore the shipped runs and train
    everything."""
    return env_flag("T2VLAD_RETRAIN")


def manifest(root: str | Path = SHIPPED_DIR) -> dict[str, Any]:
    """``manifest.json`` of a shipped folder (``{"runs": {}}`` when there is none). A file that is not JSON,
    an entry without a fingerprint, or a run name that leads out of the folder is a ValueError naming it."""
    path = Path(root) / "manifest.json"
    if not path.exists():
        return {"runs": {}}
    try:
        man = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); restore it (git checkout {path})") from None
    if not isinstance(man, dict) or not isinstance(man.get("runs"), dict):
        raise ValueError(f"{path}: expected an object with \"runs\": run name -> entry")
    for name, entry in man["runs"].items():
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts or "\\" in name:
            raise ValueError(f"{path}: run name {name!r} is not a path inside {Path(root)}")
        if not isinstance(entry, dict) or not isinstance(entry.get("fingerprint"), str):
            raise ValueError(f"{path}: run {name!r} has no \"fingerprint\" string")
    return man


def find(cfg: TrainConfig, root: str | Path = SHIPPED_DIR) -> tuple[str, dict[str, Any]] | None:
    """(name, manifest entry) of the shipped run with ``cfg``'s fingerprint, or None."""
    key = fingerprint(cfg)
    for name, entry in manifest(root)["runs"].items():
        if entry["fingerprint"] == key:
            return name, entry
    return None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(cfg: TrainConfig, src: Path, entry: dict[str, Any]) -> tuple[dict, dict | None]:
    """The shipped run's ``results.json`` and checkpoint payload (None without one), after checking that
    they are the run of ``cfg`` the manifest promises: the weights file has the manifest's sha256, and the
    shipped config and data (of ``results.json`` and of the checkpoint) have ``cfg``'s identity."""
    def refuse(what: str) -> CheckpointError:
        return CheckpointError(f"shipped run {src}: {what}; the shipped folder was changed: restore it "
                               "(git checkout shipped_runs), or set T2VLAD_RETRAIN=1 to train the run")

    results = read_results(src)
    if results is None or results["test"] != entry.get("test"):
        raise refuse("its results.json is missing or does not have the manifest's test metrics")
    want = run_identity(cfg)
    diff = run_identity(results.get("config", {}), entry.get("data", "")).diff(want)
    payload = None
    if (src / CHECKPOINT).exists():
        digest = _file_sha256(src / CHECKPOINT)
        if digest != entry.get("checkpoint_sha256"):
            raise refuse(f"{CHECKPOINT} has sha256 {digest[:16]}..., the manifest "
                         f"{str(entry.get('checkpoint_sha256'))[:16]}...")
        payload = load_checkpoint(src / CHECKPOINT)
        diff = diff or run_identity(payload["config"], recorded_data(payload, src / CHECKPOINT)).diff(want)
    if diff:
        raise refuse(f"it is not the run of this config, though the manifest's fingerprint says so "
                     f"(shipped vs here: {'; '.join(diff[:4])})")
    return results, payload


def install(cfg: TrainConfig, root: str | Path = SHIPPED_DIR, verbose: bool = True) -> bool:
    """Copy the shipped run of ``cfg`` into ``cfg.run_dir()``; False when there is none (or retraining).

    The shipped files are checked first (:func:`_verified`; a mismatch is a ``CheckpointError``). The
    config files get ``cfg``'s own config (the same identity: only runtime keys such as ``out_dir``, and
    where a distillation teacher lies, differ), the float16 weights, if shipped, become a float32
    ``best.pt``; ``results.json`` gains ``"data"`` (the data identity) and ``"shipped"``: the manifest entry
    (date, machine, the float16 weights' test metrics).
    """
    if retrain():
        return False
    hit = find(cfg, root)
    if hit is None:
        return False
    name, entry = hit
    src, run_dir = Path(root) / name, cfg.run_dir()
    if not src.resolve().is_relative_to(Path(root).resolve()):
        raise ValueError(f"{Path(root) / 'manifest.json'}: run {name!r} lies outside {root}")
    results, payload = _verified(cfg, src, entry)
    run_dir.mkdir(parents=True, exist_ok=True)
    here = cfg.to_dict()
    results.update(config=here, data=entry["data"], shipped={k: v for k, v in entry.items() if k != "config"})
    if payload is not None:
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
        _say_installed(run_dir, weights=payload is not None)
    return True


def install_extra(cfg: TrainConfig, filename: str, root: str | Path = SHIPPED_DIR) -> bool:
    """Copy one extra file (``EXTRA_FILES``, e.g. a re-ranker's summary) of ``cfg``'s shipped run into its run
    directory, for a run installed before the file was shipped; False when there is none (or retraining)."""
    hit = None if retrain() else find(cfg, root)
    src = Path(root) / hit[0] / filename if hit else None
    if src is None or not any(src.match(pattern) for pattern in EXTRA_FILES) or not src.is_file():
        return False
    cfg.run_dir().mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, cfg.run_dir() / filename)
    return True


_SAID: set[Path] = set()  # the folders whose shipped run summaries were announced (once per process)


def _say_installed(run_dir: Path, weights: bool) -> None:
    """One line per run with weights; one line per folder of runs (``<folder>/<variant>/seed<n>``) for
    summaries, so that a sweep of 42 runs says it once. Paths in the repository are shown from its root."""
    def shown(path: Path) -> Path:
        path = path.resolve()
        return path.relative_to(REPO) if path.is_relative_to(REPO) else path

    where = "(where and when it was trained: docs/reproducibility.md)"
    if weights:
        print(f"loaded the shipped run into {shown(run_dir)} {where}; set T2VLAD_RETRAIN=1 to train it "
              "yourself")
    elif (folder := run_dir.resolve().parent.parent) not in _SAID:
        _SAID.add(folder)
        print(f"loaded shipped run summaries into {shown(folder)}/ {where.replace('it was', 'they were')}; "
              "set T2VLAD_RETRAIN=1 to train them yourself")


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
    those metrics go to the manifest (``checkpoint_test``): what ``tests/e2e/test_shipped_weights.py`` checks.
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
        cfg = from_dict(results["config"])
        state = inspect_run(run_dir, cfg)
        if state.kind not in ("finished", "summary"):
            raise ValueError(f"pack: {run_dir} holds {state.describe()}, not a finished run of its config")
        dst = tmp / name
        dst.mkdir(parents=True)
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
            "data": data_identity(cfg),
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
            entry["checkpoint_sha256"] = _file_sha256(dst / CHECKPOINT)
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


def refresh(root: str | Path = SHIPPED_DIR) -> dict[str, Any]:
    """Recompute every manifest entry's identity fields from its shipped ``config.json``: ``fingerprint``,
    ``data`` and the checkpoint's ``checkpoint_sha256`` (after the definition of a run's identity changed;
    the runs, their weights and metrics stay as they are). Rewrites ``manifest.json``; returns it."""
    root = Path(root)
    man = manifest(root)
    for name, entry in man["runs"].items():
        cfg = from_dict(json.loads((root / name / "config.json").read_text()))
        new = {"fingerprint": fingerprint(cfg), "data": data_identity(cfg)}
        if entry.get("checkpoint"):
            new["checkpoint_sha256"] = _file_sha256(root / name / entry["checkpoint"])
        # "data" takes the place of the older manifests' "data_version" (the DigitClips version alone)
        order = list(dict.fromkeys(["data" if k == "data_version" else k for k in entry] + list(new)))
        man["runs"][name] = {k: new[k] if k in new else entry[k] for k in order}
    atomic_write_text(root / "manifest.json", json.dumps(man, indent=1) + "\n")
    return man


register_run_source(install)  # train.ensure_trained fills an empty run directory from here first
