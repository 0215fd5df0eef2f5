"""Training configuration: dataclasses with defaults, named profiles in ``t2vlad_lib/configs/*.yaml``.

    cfg = load_config("tutorial", overrides=["epochs=3", "model.num_clusters=16"])

Profiles: ``tutorial`` (DigitClips on a CPU in minutes), ``fast`` (tests and notebooks under
``T2VLAD_FAST=1``), ``msrvtt-1ka`` (the paper: MSRVTT 1k-A features, BERT-base fine-tuned, D=768, K=9),
and, by path, ``configs/extra/etva-msrvtt.yaml`` (msrvtt-1ka with ALBERT-base as the text encoder,
ETVA; untested here: needs the albert-base-v2 weights).
A profile file may be a path too. Unknown keys are an error that lists the valid ones.

``arch`` picks the model the trainer builds ("t2vlad", "ce", "mmt", "meanpool"; ``t2vlad_lib.baselines``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .baselines import ARCH_PRESETS, ARCHES
from .model import ModelConfig

__all__ = [
    "TrainConfig",
    "DataSection",
    "TextSection",
    "OptimSection",
    "LossSection",
    "DistillSection",
    "load_config",
    "PROFILES_DIR",
    "available_profiles",
    "config_diff",
    "parse_override",
]

PROFILES_DIR = Path(__file__).with_name("configs")
# ModelConfig fields a profile may set; expert_dims and text_dim come from the data and the text encoder.
MODEL_KEYS = tuple(f.name for f in fields(ModelConfig) if f.name not in ("expert_dims", "text_dim"))


@dataclass
class DataSection:
    """dataset: "digitclips" or a directory in the released layout. layout: which split files (e.g.
    "msrvtt-1ka"; None = the dataset's default). experts: which experts to use (None = all found).
    max_segments: per-expert cap on T_e (longer sequences are sampled uniformly or truncated).
    fast: DigitClips size (None = follow T2VLAD_FAST). val_holdout: videos held out of train for
    model selection when the layout has no validation list (MSRVTT 1k-A). caption_noise: fraction of the
    training captions replaced by another training video's caption (deterministic by ``seed``; a noisy-
    label experiment for similarity distillation, ``pipeline.corrupt_captions``; val/test stay clean)."""

    dataset: str = "digitclips"
    layout: str | None = None
    experts: list[str] | None = None
    max_segments: dict[str, int] = field(default_factory=dict)
    sampling: str = "uniform"
    caption_len: int = 24
    fast: bool | None = None
    val_holdout: int = 0
    test_protocol: str = "fixed"
    caption_noise: float = 0.0


@dataclass
class TextSection:
    """model: "minilm" (offline default), "bert-base-uncased", a hub name or a local path.
    freeze + cache_states: encode every caption once and train on cached token states (CPU).
    finetune_top_layers: fine-tune only the top n layers (None = all when not frozen). lr: text lr."""

    model: str = "minilm"
    freeze: bool = True
    cache_states: bool = True
    finetune_top_layers: int | None = None
    lr: float | None = None


@dataclass
class OptimSection:
    """name: "ranger" (paper) | "adamw" (port) | "radam"; lr x decay every decay_every epochs."""

    name: str = "ranger"
    lr: float = 1e-4
    weight_decay: float = 1e-4
    decay: float = 0.9
    decay_every: int = 5
    grad_clip: float | None = 2.0


@dataclass
class LossSection:
    """name: "max_margin" (paper, margin 0.02) | "hardest" (VSE++, the port's margin 0.2) | "infonce"
    (symmetric InfoNCE, CLIP4Clip; ``margin`` unused). temperature: InfoNCE's tau (None = 0.05)."""

    name: str = "max_margin"
    margin: float = 0.02
    temperature: float | None = None


@dataclass
class DistillSection:
    """Similarity distillation (CLIP2TV, ``t2vlad_lib.distill``): loss += weight * KL(teacher || student)
    of the in-batch similarity distributions at ``temperature``. weight 0 = off. teacher: a checkpoint of a
    frozen teacher, a trainer ``best.pt`` (dual encoder) or ``matching.train_matching``'s ``matching.pt``."""

    weight: float = 0.0
    temperature: float = 0.05
    teacher: str | None = None


@dataclass
class TrainConfig:
    """The run. arch: "t2vlad" (the paper) | "ce" (T2VLAD global-only with [CLS] text, CE-style) | "mmt"
    (MMT-style transformer over expert tokens) | "meanpool" (CLIP4Clip meanP); see ``baselines``."""

    profile: str = "custom"
    arch: str = "t2vlad"
    seed: int = 0
    epochs: int = 150
    batch_size: int = 64
    eval_every: int = 1
    eval_batch_size: int = 256
    select_metric: str = "t2v_R1"
    device: str | None = None
    amp: bool = True
    num_workers: int = 0
    out_dir: str = "runs/{profile}-seed{seed}"
    model: dict[str, Any] = field(default_factory=dict)
    data: DataSection = field(default_factory=DataSection)
    text: TextSection = field(default_factory=TextSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossSection = field(default_factory=LossSection)
    distill: DistillSection = field(default_factory=DistillSection)

    def __post_init__(self) -> None:
        if self.arch not in ARCHES:
            raise ValueError(f"arch: unknown {self.arch!r}; valid: {', '.join(ARCHES)}")
        for key, value in ARCH_PRESETS.get(self.arch, {}).items():
            if key in self.model and self.model[key] != value:
                raise ValueError(
                    f"arch={self.arch!r} fixes model.{key}={value!r}; the config sets {self.model[key]!r}"
                )
        if not 0.0 <= self.data.caption_noise < 1.0:
            raise ValueError(
                f"data.caption_noise: expected a fraction in [0, 1), got {self.data.caption_noise}"
            )
        if self.distill.weight < 0 or (self.distill.weight > 0 and not self.distill.teacher):
            raise ValueError(
                f"distill: weight {self.distill.weight} needs weight >= 0 and, when > 0, "
                "a teacher checkpoint (distill.teacher=path/to/best.pt)"
            )
        if not self.distill.temperature > 0:
            raise ValueError(f"distill.temperature: expected > 0, got {self.distill.temperature}")

    def run_dir(self) -> Path:
        return Path(self.out_dir.format(profile=self.profile, seed=self.seed))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model_config(self, expert_dims: dict[str, int], text_dim: int) -> ModelConfig:
        """The T2VLAD :class:`ModelConfig` ("t2vlad", or "ce" with its preset applied)."""
        return ModelConfig(
            expert_dims=expert_dims, text_dim=text_dim, **{**self.model, **ARCH_PRESETS.get(self.arch, {})}
        )


SECTIONS = {
    "data": DataSection,
    "text": TextSection,
    "optim": OptimSection,
    "loss": LossSection,
    "distill": DistillSection,
}


def _check_keys(given: dict, valid: tuple[str, ...] | list[str], where: str) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown config key(s) {unknown} in {where}; valid keys: {', '.join(sorted(valid))}"
        )


def from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested dicts, rejecting unknown keys by name."""
    raw = dict(raw)
    _check_keys(raw, [f.name for f in fields(TrainConfig)], "the top level")
    model = dict(raw.pop("model", None) or {})
    _check_keys(model, MODEL_KEYS, "'model'")
    sections = {}
    for name, cls in SECTIONS.items():
        part = dict(raw.pop(name, None) or {})
        _check_keys(part, [f.name for f in fields(cls)], f"'{name}'")
        sections[name] = cls(**part)
    return TrainConfig(model=model, **sections, **raw)


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def _set(raw: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = raw
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {dotted!r}: {k!r} is not a section")
    node[keys[-1]] = value


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_config(
    profile: str | Path = "tutorial", overrides: list[str] | dict[str, Any] | None = None
) -> TrainConfig:
    """Load a named profile (or a YAML path) and apply ``key.sub=value`` overrides.

    Raises:
        ValueError: unknown profile or key (the message lists the valid ones).
    """
    path = Path(profile)
    if not path.suffix:
        path = PROFILES_DIR / f"{profile}.yaml"
        if not path.exists():
            raise ValueError(f"unknown profile {profile!r}; valid: {', '.join(available_profiles())}")
    elif not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    raw.setdefault("profile", path.stem)
    items = overrides.items() if isinstance(overrides, dict) else [parse_override(o) for o in overrides or []]
    for key, value in items:
        _set(raw, key, value)
    return from_dict(raw)


def parse_override(text: str) -> tuple[str, Any]:
    """``"model.num_clusters=16"`` -> ("model.num_clusters", 16): the value is read as YAML."""
    if "=" not in text:
        raise ValueError(f"override {text!r} is not of the form key=value (e.g. model.num_clusters=16)")
    key, value = text.split("=", 1)
    return key.strip(), _parse_value(value)


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, dataclasses.MISSING), b.get(key, dataclasses.MISSING)
        name = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, name + ".")
        elif va != vb:
            out.append(name)
    return out
