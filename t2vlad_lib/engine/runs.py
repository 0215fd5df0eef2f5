"""Runs on disk: the models a config can build, the one rule for "finished", and loading a trained run.

A run directory (``train.train`` writes it) holds ``config.json``, ``history.csv`` / ``history.json``,
``last.pt`` (after every epoch, for ``--resume``), ``best.pt`` (the validation-selected weights) and, once
``best.pt`` has been evaluated on the test split, ``results.json``. Whether a directory holds the run of a
config is decided in one place, :func:`inspect_run`, by comparing :class:`RunIdentity` (the config without
its runtime-only keys, and the data: a DigitClips version or a released directory's lists) with the one the
run's checkpoint records. A run is *finished* for a config when ``results.json`` and ``best.pt`` exist and
``best.pt`` has that identity (:func:`is_finished`); training, loading, the ablations, notebook 10's
comparison and the shipped runs all ask this one question.

    run = load_run("runs/tutorial-seed0")           # model (eval mode), its config, its data, results
    metrics = evaluate(run.model, run.data.test)

This module sits below the trainer: ``train``, ``ablate``, ``beyond``, ``matching``, ``distill``, ``search``
and the CLI import it, and it imports none of them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.checkpoint import CheckpointError, load_checkpoint
from ..model.baselines import BaselineConfig, MeanPool, MMTStyle
from ..model.t2vlad import T2VLAD
from .config import RUNTIME_KEYS, ConfigError, TrainConfig, config_diff, from_dict, lookup
from .pipeline import Prepared, data_identity, prepare

__all__ = ["ARCHITECTURES", "RUN_SOURCES", "register_run_source", "check_config",
           "RunIdentity", "run_identity", "recorded_data", "RunState", "inspect_run",
           "build_model", "checkpoint_file", "read_results", "is_finished", "run_state",
           "load_weights", "LoadedRun", "load_run"]


# Where a finished run can come from without training, tried in order when a run directory is empty
# (``train.ensure_trained``): callables(cfg) -> True when they filled ``cfg.run_dir()``. The course registers
# its shipped runs (``course.shipped.install``); the engine knows none.
RUN_SOURCES: list[Callable[[TrainConfig], bool]] = []


def register_run_source(source: Callable[[TrainConfig], bool]) -> None:
    """Add ``source(cfg) -> bool`` to :data:`RUN_SOURCES` (once)."""
    if source not in RUN_SOURCES:
        RUN_SOURCES.append(source)


def _t2vlad(cfg: TrainConfig, data: Prepared) -> nn.Module:
    return T2VLAD(cfg.model_config(data.expert_dims, data.text_dim), text_encoder=data.text_encoder)


def _baseline(cls: type) -> Callable[[TrainConfig, Prepared], nn.Module]:
    def build(cfg: TrainConfig, data: Prepared) -> nn.Module:
        keys = {k: v for k, v in cfg.model.items() if k in BaselineConfig.__dataclass_fields__}
        return cls(BaselineConfig(data.expert_dims, data.text_dim, **keys), text_encoder=data.text_encoder)

    return build


# cfg.arch -> builder. "ce" is T2VLAD with its preset (baselines.ARCH_PRESETS, applied by model_config).
ARCHITECTURES: dict[str, Callable[[TrainConfig, Prepared], nn.Module]] = {
    "t2vlad": _t2vlad,
    "ce": _t2vlad,
    "mmt": _baseline(MMTStyle),
    "meanpool": _baseline(MeanPool),
}


def build_model(cfg: TrainConfig, data: Prepared) -> nn.Module:
    """The untrained model of ``cfg.arch`` for ``data`` (expert widths, text width; the text encoder inside
    when it is fine-tuned). Baselines read only their keys of ``cfg.model``.

    A fine-tuned encoder is a copy of ``data.text_encoder`` (``TextEncoder.clone``): training changes the
    model's copy, never the prepared one, so runs that share prepared data (ablations, ``train_or_load``,
    a distillation teacher) each start from the pretrained weights and leave each other's models alone.
    """
    if data.text_encoder is not None:
        data = replace(data, text_encoder=data.text_encoder.clone())
    return ARCHITECTURES[cfg.arch](cfg, data)


def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself for a file, ``path/best.pt`` for a run directory."""
    path = Path(path)
    return path / "best.pt" if path.is_dir() else path


def read_results(run_dir: str | Path) -> dict[str, Any] | None:
    """``results.json`` of a run, or None when there is none (an unreadable file, or one without the test
    metrics, is an error naming it)."""
    path = Path(run_dir) / "results.json"
    if not path.exists():
        return None
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err}); delete it and train the run again") from None
    if not isinstance(results, dict) or not isinstance(results.get("test"), dict):
        raise CheckpointError(f"{path}: no test metrics (expected an object with \"test\": metric -> value); "
                              "delete it and train the run again")
    return results


def _config_part(cfg: TrainConfig | dict[str, Any]) -> dict[str, Any]:
    """The config of an identity: canonical (``from_dict``: types converted, defaults filled), without the
    runtime-only keys, a distillation teacher as its path relative to the run directory."""
    cfg = from_dict(cfg) if isinstance(cfg, dict) else cfg
    body = {k: v for k, v in cfg.to_dict().items() if k not in RUNTIME_KEYS}
    if cfg.distill.teacher:  # where the runs root lies is not part of a run
        body["distill"] = {**body["distill"], "teacher": os.path.relpath(cfg.distill.teacher, cfg.run_dir())}
    return body


def _changes(a: dict[str, Any], b: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[tuple]:
    """(dotted key, value in a, value in b) where two config dicts differ, keys under ``ignore`` left out."""
    keys = [k for k in config_diff(a, b) if not any(k == i or k.startswith(i + ".") for i in ignore)]
    return [(k, lookup(a, k, "<absent>"), lookup(b, k, "<absent>")) for k in keys]


@dataclass(frozen=True)
class RunIdentity:
    """What makes two runs the same run: the config (without runtime-only keys, :data:`RUNTIME_KEYS`) and
    the data it trains on (``pipeline.data_identity``; None in checkpoints written before it was recorded)."""

    config: dict[str, Any]
    data: str | None

    def fingerprint(self) -> str:
        """16 hex digits of a sha256 of the identity: equal fingerprints, the same run (``shipped``)."""
        text = json.dumps({"config": self.config, "data": self.data}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def diff(self, other: RunIdentity, ignore: tuple[str, ...] = ()) -> list[str]:
        """What differs, one ``"key: mine vs other's"`` each, the data first:
        ``["data: digitclips-v3-full-seed0 vs digitclips-v4-full-seed0", "model.num_clusters: 9 vs 16"]``."""
        data = [f"data: {self.data or 'not recorded'} vs {other.data or 'not recorded'}"] * (
            self.data != other.data)
        return data + [f"{k}: {a!r} vs {b!r}" for k, a, b in _changes(self.config, other.config, ignore)]


def run_identity(cfg: TrainConfig | dict[str, Any], data: str | None = None) -> RunIdentity:
    """The identity of a config's run; ``data`` is the data's identity as a checkpoint records it (default:
    ``pipeline.data_identity(cfg)``, computed from the config without generating or loading anything)."""
    cfg = from_dict(cfg) if isinstance(cfg, dict) else cfg
    return RunIdentity(_config_part(cfg), data if data is not None else data_identity(cfg))


def recorded_data(payload: dict[str, Any], path: str | Path) -> str | None:
    """The data identity a checkpoint (or an installed summary's ``results.json``) records: its ``data``
    entry's ``id`` (in older checkpoints the directory's name, the identity of a DigitClips directory); None
    when it records none. A ``data`` entry that names no data set is an error naming the file."""
    data = payload.get("data")
    if data is None or isinstance(data, str) and data:
        return data
    found = (data.get("id") or data.get("dir")) if isinstance(data, dict) else None
    if not isinstance(found, str) or not found:
        raise CheckpointError(f"{path}: its data record {data!r:.80} names no data set; expected "
                              "{\"id\": ..., \"dir\": ...} as the trainer writes it")
    return found


def _identity_of(payload: dict[str, Any], path: Path) -> RunIdentity:
    """The identity a checkpoint or ``results.json`` records (config and data)."""
    if not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"{path}: no config recorded")
    try:
        return RunIdentity(_config_part(payload["config"]), recorded_data(payload, path))
    except ConfigError as err:
        raise CheckpointError(f"{path}: its config does not load here: {err.problems[0]}") from None


@dataclass(frozen=True)
class RunState:
    """What a run directory holds for a config (:func:`inspect_run`).

    kind: "empty" (no run files), "finished" (``results.json`` and ``best.pt``), "summary" (a shipped run
    installed without weights: ``results.json`` only), "unfinished" (``last.pt``, no results yet:
    ``--resume`` continues it), "interrupted" (``best.pt`` alone: killed before its first ``last.pt`` was
    written, nothing to resume), "other" (a run of another identity: ``diff`` says what differs, the run's
    value first) or "damaged" (``problem`` says why). installed: its files are a copy of a shipped run
    (``results.json`` says so, no ``last.pt``): nothing in it was trained here.
    """

    kind: str
    diff: tuple[str, ...] = ()
    problem: str = ""
    installed: bool = False

    def describe(self) -> str:
        """The state in words, for messages: "a finished run", "a run of another config or data (...)"."""
        if self.kind == "other":
            more = f"; and {len(self.diff) - 4} more" if len(self.diff) > 4 else ""
            return f"a run of another config or data (there vs here: {'; '.join(self.diff[:4])}{more})"
        if self.kind == "damaged":
            return f"a damaged run ({self.problem})"
        return {"empty": "no run", "finished": "a finished run", "summary": "a shipped run summary",
                "unfinished": "an unfinished run (continue it with --resume)",
                "interrupted": "an interrupted run (killed before its first last.pt was written: nothing to "
                               "resume)"}[self.kind]


def inspect_run(run_dir: str | Path, cfg: TrainConfig | None = None) -> RunState:
    """The one rule for what ``run_dir`` holds (:class:`RunState`). With ``cfg``, a run counts only when the
    identity its checkpoint (or an installed summary's ``results.json``) records equals ``run_identity(cfg)``
    (else "other", with the differences); ``cfg=None`` takes any identity."""
    run_dir = Path(run_dir)
    best, last, res = (run_dir / n for n in ("best.pt", "last.pt", "results.json"))
    if not any(p.exists() for p in (best, last, res)):
        return RunState("empty")
    try:
        results = read_results(run_dir)
        installed = results is not None and "shipped" in results and not last.exists()
        if results is not None and best.exists():
            kind, source = "finished", best
        elif installed:
            kind, source = "summary", res
        elif results is None and last.exists():
            kind, source = "unfinished", last
        elif results is None and best.exists():
            kind, source = "interrupted", best
        else:
            have = [p.name for p in (best, last, res) if p.exists()]
            return RunState("damaged", problem=f"{', '.join(have)} without the rest of a run")
        if cfg is None:
            return RunState(kind, installed=installed)
        saved = results if source is res else load_checkpoint(source)
        diff = _identity_of(saved, source).diff(run_identity(cfg))
    except CheckpointError as err:
        return RunState("damaged", problem=str(err))
    return RunState("other" if diff else kind, tuple(diff), installed=installed)


def run_state(run_dir: str | Path, cfg: TrainConfig | None = None) -> str:
    """The kind of :func:`inspect_run`: "empty", "finished", "summary", "unfinished", "interrupted", "other"
    or "damaged"."""
    return inspect_run(run_dir, cfg).kind


def is_finished(run_dir: str | Path, cfg: TrainConfig | None = None) -> bool:
    """The one rule: ``results.json`` and ``best.pt`` exist, and ``best.pt`` is a run of ``cfg``'s identity
    (every key but the runtime-only ones: device, workers, evaluation batch size, output directory, AMP; and
    the same data)."""
    return run_state(run_dir, cfg) == "finished"


def load_weights(
    model: nn.Module, state: dict[str, torch.Tensor], path: str | Path, cfg: TrainConfig
) -> None:
    """``model.load_state_dict(state)`` with an error that names the checkpoint, the mismatching tensors
    and the config keys that shape them, instead of torch's wall of text."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} in the checkpoint vs {tuple(own[k].shape)} here"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if not (missing or unexpected or shapes):
        model.load_state_dict(state)
        return
    parts = shapes[:3] + [f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}"
                          if unexpected else ""]
    raise CheckpointError(
        f"checkpoint {path} does not fit the model of its config (arch={cfg.arch!r}, model={cfg.model}, "
        f"experts {sorted(cfg.data.experts or [])} of dataset {cfg.data.dataset!r}, text.model="
        f"{cfg.text.model!r}): {'; '.join(p for p in parts if p)}. Were the features or the text encoder "
        "changed since it was trained?"
    )


def check_config(
    path: str | Path, saved: dict[str, Any], current: dict[str, Any], allow: tuple[str, ...] = ()
) -> None:
    """Refuse a checkpoint whose config differs from the current one (runtime-only keys and ``allow``,
    e.g. ``("epochs",)`` to extend a run on resume, excepted): the config part of :class:`RunIdentity`."""
    diff = _changes(_config_part(saved), _config_part(current), allow)
    if diff:
        details = ", ".join(f"{k}: {a!r} in checkpoint vs {b!r} now" for k, a, b in diff)
        raise CheckpointError(f"checkpoint {path} was made with another config; mismatching keys: {details}")


@dataclass
class LoadedRun:
    """A trained run: the model (eval mode) with the checkpoint's weights, its config, the prepared data,
    ``results.json`` (None for a checkpoint outside a finished run) and the checkpoint file."""

    model: nn.Module
    cfg: TrainConfig
    data: Prepared
    results: dict[str, Any] | None
    path: Path
    payload: dict[str, Any] = field(default_factory=dict, repr=False)


def load_run(
    path: str | Path,
    data: Prepared | None = None,
    cfg: TrainConfig | None = None,
    device: str | torch.device = "cpu",
    test_protocol: str | None = None,
    verbose: bool = False,
) -> LoadedRun:
    """Load a trained model from a run directory (its ``best.pt``) or a checkpoint file.

    Args:
        path: run directory or ``.pt`` checkpoint written by the trainer (loaded with ``weights_only``).
        data: prepared data to reuse (default: prepared from the checkpoint's config).
        cfg: the config the caller expects; a checkpoint of another config is refused, naming the keys.
        test_protocol: evaluate with this protocol ("fixed" / "all") instead of the checkpoint's.
    """
    ckpt_path = checkpoint_file(path)
    payload = load_checkpoint(ckpt_path, map_location=device)
    saved = _identity_of(payload, ckpt_path)
    if cfg is not None:  # the same config; the data is compared below, once prepared
        diff = saved.diff(RunIdentity(_config_part(cfg), saved.data))
        if diff:
            raise CheckpointError(f"checkpoint {ckpt_path} was trained with another config "
                                  f"(there vs here: {'; '.join(diff)})")
    use = cfg if cfg is not None else from_dict(payload["config"])
    if test_protocol is not None and test_protocol != use.data.test_protocol:
        use = from_dict({**use.to_dict(), "data": {**use.to_dict()["data"], "test_protocol": test_protocol}})
        data = None
    data = data if data is not None else prepare(use, verbose=verbose)
    here = data.identity()
    if saved.data is not None and saved.data not in (here["id"], here["dir"]):  # "dir": older checkpoints
        raise CheckpointError(
            f"checkpoint {ckpt_path} was trained on {saved.data!r} but this data is {here['id']!r} "
            f"({data.root}): another DigitClips version or data set; train it again on this data"
        )
    model = build_model(use, data)
    load_weights(model, payload["model"], ckpt_path, use)
    run_dir = ckpt_path.parent
    results = read_results(run_dir) if ckpt_path.name == "best.pt" else None
    return LoadedRun(model.to(device).eval(), use, data, results, ckpt_path, payload)
