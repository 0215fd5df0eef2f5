"""Runs on disk: the models a config can build, the one rule for "finished", and loading a trained run.

A run directory (``train.train`` writes it) holds ``config.json``, ``history.csv`` / ``history.json``,
``last.pt`` (after every epoch, for ``--resume``), ``best.pt`` (the validation-selected weights) and, once
``best.pt`` has been evaluated on the test split, ``results.json``. A run is *finished* for a config when
``results.json`` and ``best.pt`` exist and ``best.pt`` was trained with that config (:func:`is_finished`);
every part of the library asks this one question the same way.

    run = load_run("runs/tutorial-seed0")           # model (eval mode), its config, its data, results
    metrics = evaluate(run.model, run.data.test)

This module sits below the trainer: ``train``, ``ablate``, ``beyond``, ``matching``, ``distill``, ``search``
and the CLI import it, and it imports none of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.checkpoint import CheckpointError, load_checkpoint
from ..model.baselines import BaselineConfig, MeanPool, MMTStyle
from ..model.t2vlad import T2VLAD
from .config import RUNTIME_KEYS, TrainConfig, config_diff, from_dict, migrate
from .pipeline import Prepared, prepare

__all__ = ["ARCHITECTURES", "RUN_SOURCES", "register_run_source", "check_config",
           "build_model", "checkpoint_file", "read_results", "is_finished", "run_state",
           "load_weights", "LoadedRun", "load_run"]


# Where a finished run can come from without training, tried in order when a run directory is empty
# (``train.installed_state``): callables(cfg) -> True when they filled ``cfg.run_dir()``. The course registers
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
    """``results.json`` of a run, or None when there is none (an unreadable file is an error)."""
    path = Path(run_dir) / "results.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err}); delete it and train the run again") from None


def _same_config(saved: dict[str, Any], cfg: TrainConfig) -> bool:
    saved = migrate(saved)[0]  # a run saved before the config keys changed
    return not [k for k in config_diff(saved, cfg.to_dict()) if k.split(".")[0] not in RUNTIME_KEYS]


def run_state(run_dir: str | Path, cfg: TrainConfig | None = None) -> str:
    """What a run directory holds: "empty" (no run files), "finished" (see :func:`is_finished`),
    "summary" (a shipped run installed without its weights: results of this config, no ``best.pt``;
    ``shipped.py``), "unfinished" (``last.pt`` of this config, no results yet: ``--resume`` continues it),
    or "other" (run files of another config, or a damaged run). With ``cfg=None`` any config counts."""
    run_dir = Path(run_dir)
    names = ("best.pt", "last.pt", "results.json")
    if not any((run_dir / n).exists() for n in names):
        return "empty"
    try:
        results = read_results(run_dir)
        if results is not None and (run_dir / "best.pt").exists():
            saved = load_checkpoint(run_dir / "best.pt")["config"]
            if cfg is None or _same_config(saved, cfg):
                return "finished"
            return "other"
        if results is not None and "shipped" in results and not (run_dir / "last.pt").exists():
            return "summary" if cfg is None or _same_config(results.get("config", {}), cfg) else "other"
        if (run_dir / "last.pt").exists():
            saved = load_checkpoint(run_dir / "last.pt")["config"]
            return "unfinished" if cfg is None or _same_config(saved, cfg) else "other"
    except CheckpointError:
        return "other"
    return "other"


def is_finished(run_dir: str | Path, cfg: TrainConfig | None = None) -> bool:
    """The one rule: ``results.json`` and ``best.pt`` exist, and ``best.pt`` was trained with ``cfg`` (every
    key but the runtime-only ones: device, workers, evaluation batch size, output directory, AMP)."""
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
    e.g. ``("epochs",)`` to extend a run on resume, excepted)."""
    skip = set(RUNTIME_KEYS) | set(allow)
    saved = migrate(saved)[0]  # a checkpoint saved before the config keys changed
    diff = [k for k in config_diff(saved, current) if k.split(".")[0] not in skip]
    if diff:
        details = ", ".join(
            f"{k}: {_get(saved, k)!r} in checkpoint vs {_get(current, k)!r} now" for k in diff
        )
        raise CheckpointError(f"checkpoint {path} was made with another config; mismatching keys: {details}")


def _get(d: dict, dotted: str) -> Any:
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return "<absent>"
        d = d[k]
    return d


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
    saved = from_dict(payload["config"])
    if cfg is not None:
        diff = [k for k in config_diff(saved.to_dict(), cfg.to_dict()) if k.split(".")[0] not in RUNTIME_KEYS]
        if diff:
            raise CheckpointError(
                f"checkpoint {ckpt_path} was trained with another config: {', '.join(diff)} differ"
            )
    use = cfg if cfg is not None else saved
    if test_protocol is not None and test_protocol != use.data.test_protocol:
        use = from_dict({**use.to_dict(), "data": {**use.to_dict()["data"], "test_protocol": test_protocol}})
        data = None
    data = data if data is not None else prepare(use, verbose=verbose)
    trained_on, here = payload.get("data"), data.identity()
    if trained_on is not None and trained_on["dir"] != here["dir"]:
        raise CheckpointError(
            f"checkpoint {ckpt_path} was trained on {trained_on['dir']!r} but this data is {here['dir']!r} "
            f"({data.root}): another DigitClips version or data set; train it again on this data"
        )
    model = build_model(use, data)
    load_weights(model, payload["model"], ckpt_path, use)
    run_dir = ckpt_path.parent
    results = read_results(run_dir) if ckpt_path.name == "best.pt" else None
    return LoadedRun(model.to(device).eval(), use, data, results, ckpt_path, payload)
