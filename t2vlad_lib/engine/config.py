"""Training configuration: dataclasses with defaults, named profiles in ``t2vlad_lib/configs/*.yaml``.

    cfg = load_config("tutorial", overrides=["epochs=3", "model.num_clusters=16"])

Profiles: ``tutorial`` (DigitClips on a CPU in minutes), ``tutorial-finetune`` (the same with MiniLM
fine-tuned inside the model at its own lr; only the text section differs), ``fast`` (tests and notebooks
under ``T2VLAD_FAST=1``), ``msrvtt-1ka`` (the paper: MSRVTT 1k-A features, BERT-base fine-tuned, D=768, K=9),
and, by path, ``configs/extra/etva-msrvtt.yaml`` (msrvtt-1ka with ALBERT-base as the text encoder,
ETVA; no ALBERT weights can be had offline here, so only a tiny random ``AlbertConfig`` is tested).
A profile file may be a path too. Unknown keys are an error that lists the valid ones.

Variants are one key each, not interacting flags: ``model.vlad: {kind: shared | separate | text_only, ...}``
takes only its kind's options (``vlad.VLAD_KINDS``), ``model.terms: both | local | global`` the similarity
terms trained with (test-time terms are ``evaluate(..., terms=...)``), ``text.mode: cached | frozen |
finetune``. Every rule that involves two keys is checked here, at load, and an option that would do nothing
in the chosen mode is an error. Configs written before (``model.sharing``, ``use_local``, ``eval_use_*``,
``text.freeze``, ``cache_states``, ...: profiles, ``--set``, ``config.json``, checkpoints) still load:
:func:`migrate` maps their keys and one line says what it mapped.

Every value, from a profile file or an override, is converted to the type of its field (``optim.lr=2e-3``,
which YAML reads as a string, becomes the float 0.002) and checked against its range or choices. All the
problems of a config are raised together as one :class:`ConfigError`, one line per problem:
``optim.lr: got -1.0; expected a float > 0``.

Run directories: ``runs/{profile}-seed{seed}`` for a profile as it is; a ``--set`` variant trains into
``runs/{profile}-<6 hex>-seed{seed}`` of its own (``load_config``).

``arch`` picks the model the trainer builds ("t2vlad", "ce", "mmt", "meanpool"; ``model.baselines``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ..core.metrics import METRIC_KEYS
from ..model.baselines import ARCH_PRESETS, ARCHES
from ..model.losses import LOSS_NAMES
from ..model.optim import OPTIMIZERS
from ..model.t2vlad import TERMS, ModelConfig
from ..model.vlad import VLAD_KINDS

__all__ = [
    "TrainConfig",
    "DataSection",
    "TextSection",
    "OptimSection",
    "LossSection",
    "DistillSection",
    "ConfigError",
    "load_config",
    "from_dict",
    "PROFILES_DIR",
    "SELECT_METRICS",
    "available_profiles",
    "RUNTIME_KEYS",
    "config_diff",
    "lookup",
    "parse_override",
    "migrate",
    "TEXT_MODES",
]

PROFILES_DIR = Path(__file__).resolve().parents[1] / "configs"
# ModelConfig fields a profile may set; expert_dims and text_dim come from the data and the text encoder.
MODEL_KEYS = tuple(f.name for f in fields(ModelConfig) if f.name not in ("expert_dims", "text_dim"))
# Choices that the code checks inline (``RetrievalDataset``, ``NetVLAD``, ``ModelConfig``, ``prepare``).
SAMPLINGS = ("uniform", "truncate")
TEST_PROTOCOLS = ("fixed", "all")
ASSIGNMENTS = ("batchnorm", "bias")
TEXT_GLOBAL_FROM = ("vlad", "cls")
TEXT_MODES = ("cached", "frozen", "finetune")  # TextSection.mode
# parameters of one expert's global text head (K*D -> D) plus the video self-attention (~12 D^2 a layer):
# a config above this is refused at load instead of allocating it (1 GiB in float32)
MAX_PARAMETERS = 2**28
# The trainer keeps the epoch with the highest validation score, so only higher-is-better metrics qualify.
LOWER_IS_BETTER = ("MedR", "MeanR")
SELECT_METRICS = tuple(
    f"{side}_{k}" for side in ("t2v", "v2t") for k in METRIC_KEYS if k not in LOWER_IS_BETTER
)
DEVICE_PATTERN = r"cpu|mps|cuda(:\d+)?"
DEVICES = ("cpu", "cuda", "cuda:N", "mps")  # DEVICE_PATTERN in words
DEFAULT_OUT_DIR = "runs/{profile}-seed{seed}"
VARIANT_OUT_DIR = "runs/{profile}-{variant}-seed{seed}"  # a --set variant of a profile (load_config)


class ConfigError(ValueError):
    """Bad config values. ``problems`` holds one line per problem; the message joins them with newlines."""

    def __init__(self, problems: list[str] | str):
        # a str is the joined message: what unpickling (e.g. from a worker process) passes back in
        self.problems = problems.splitlines() if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class DataSection:
    """dataset: "digitclips" or a directory in the released layout. layout: which split files (e.g.
    "msrvtt-1ka"; None = the dataset's default). experts: which experts to use (None = all found).
    max_segments: per-expert cap on T_e (longer sequences are sampled uniformly or truncated).
    fast: DigitClips size (None = follow T2VLAD_FAST). val_holdout: videos held out of train for
    model selection when the layout has no validation list (MSRVTT 1k-A; required there). caption_noise:
    fraction of the training captions replaced by another training video's caption (deterministic by
    ``seed``; a noisy-label experiment for similarity distillation, ``pipeline.corrupt_captions``; val/test
    stay clean). shots: DigitClips clips have at most this many shots (1: single-shot clips, the data
    factor of the specialisation diagnosis; ``render.sample_spec``)."""

    dataset: str = "digitclips"
    layout: str | None = None
    experts: list[str] | None = None
    max_segments: dict[str, int] = field(default_factory=dict)
    sampling: str = "uniform"
    caption_len: int = 32
    fast: bool | None = None
    val_holdout: int = 0
    test_protocol: str = "fixed"
    caption_noise: float = 0.0
    shots: int = 3


@dataclass
class TextSection:
    """model: "minilm" (offline default), "bert-base-uncased", a hub name or a local path.
    mode: "cached" (frozen; every caption encoded once and its token states cached on disk: CPU training),
    "frozen" (frozen, run inside the model on every batch) or "finetune" (trained with the model).
    finetune_top_layers: fine-tune only the top n layers (None = all; finetune only). lr: the text encoder's
    lr (None = optim.lr; finetune only)."""

    model: str = "minilm"
    mode: str = "cached"
    finetune_top_layers: int | None = None
    lr: float | None = None

    @property
    def freeze(self) -> bool:
        """The encoder's weights stay as pretrained ("cached" or "frozen")."""
        return self.mode != "finetune"


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
    """Similarity distillation (CLIP2TV, ``extensions.distill``): loss += weight * KL(teacher || student)
    of the in-batch similarity distributions at ``temperature``. weight 0 = off. teacher: a checkpoint of a
    frozen teacher, a trainer ``best.pt`` (dual encoder) or ``matching.train_matching``'s ``matching.pt``."""

    weight: float = 0.0
    temperature: float = 0.05
    teacher: str | None = None


@dataclass
class TrainConfig:
    """The run. arch: "t2vlad" (the paper) | "ce" (T2VLAD global-only with [CLS] text, CE-style) | "mmt"
    (MMT-style transformer over expert tokens) | "meanpool" (CLIP4Clip meanP); see ``baselines``.

    select_metric: the validation metric the trainer maximises to pick the best epoch; one of
    :data:`SELECT_METRICS` (recalls only: MedR and MeanR are lower-is-better and refused).
    out_dir: the run directory, formatted with ``{profile}`` and ``{seed}`` by :meth:`run_dir`;
    ``load_config`` gives a ``--set`` variant of a profile its own default (see ``load_config``).

    Construction converts every value to its field's type and checks its range (:class:`ConfigError`).
    """

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
    out_dir: str = DEFAULT_OUT_DIR
    model: dict[str, Any] = field(default_factory=dict)
    data: DataSection = field(default_factory=DataSection)
    text: TextSection = field(default_factory=TextSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossSection = field(default_factory=LossSection)
    distill: DistillSection = field(default_factory=DistillSection)

    def __post_init__(self) -> None:
        bad = _convert_all(self)  # key -> problem, for values of the wrong type
        found = {**bad, **_range_problems(self, set(bad))}
        order = {key: i for i, key in enumerate(_hints())}  # field order; unknown keys first
        problems = [found[k] for k in sorted(found, key=lambda k: order.get(k, -1))]
        problems += _cross_problems(self, set(found))
        if problems:
            raise ConfigError(problems)

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
MODEL_DEFAULTS = {
    f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
    for f in fields(ModelConfig)
    if f.name in MODEL_KEYS
}


# ---- types ---------------------------------------------------------------------------------------------


class _WrongType(Exception):
    """A value that cannot be converted to its field's type."""


@cache
def _hints() -> dict[str, Any]:
    """Dotted key -> type annotation, for every value a config holds (sections and model keys flattened)."""
    top = typing.get_type_hints(TrainConfig)
    out = {k: h for k, h in top.items() if k not in SECTIONS and k != "model"}
    for name, cls in SECTIONS.items():
        out.update({f"{name}.{k}": h for k, h in typing.get_type_hints(cls).items()})
    model = typing.get_type_hints(ModelConfig)
    out.update({f"model.{k}": model[k] for k in MODEL_KEYS})
    return out


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); ``X`` -> (X, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def _to_type(value: Any, hint: Any) -> Any:
    """``value`` as ``hint``: ints and numeric strings for floats, integral numbers and strings for ints,
    only true/false for bools, lists and dicts element-wise. Raises :class:`_WrongType`."""
    hint, nullable = _unwrap(hint)
    if value is None:
        if nullable:
            return None
        raise _WrongType
    origin = typing.get_origin(hint) or hint
    if origin is bool:
        if isinstance(value, bool):
            return value
    elif origin in (int, float) and not isinstance(value, bool):
        number = _number(value) if isinstance(value, str) else value
        if isinstance(number, int | float) and math.isfinite(number):
            if origin is float:
                return float(number)
            if float(number).is_integer():
                return int(number)
    elif origin is str:
        if isinstance(value, str | os.PathLike):
            return os.fspath(value)
    elif origin is list:
        if isinstance(value, list | tuple):
            (item,) = typing.get_args(hint)
            return [_to_type(v, item) for v in value]
    elif origin is dict:
        if isinstance(value, dict):
            key, item = typing.get_args(hint)
            return {_to_type(k, key): _to_type(v, item) for k, v in value.items()}
    elif hint is Any:
        return value
    raise _WrongType


def _number(text: str) -> int | float | None:
    """``"16"`` -> 16, ``"2e-3"`` -> 0.002 (YAML reads a mantissa without a dot as a string), else None."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a float", str: "a string"}


def _type_words(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return f"a list of {_type_words(args[0]).split(' ', 1)[1]}s"
    if origin is dict:
        return f"a mapping of names to {_type_words(args[1]).split(' ', 1)[1]}s"
    return _TYPE_WORDS.get(hint, str(hint))


# ---- ranges and choices ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """ok(value) for a converted, non-null value; expected: the words after the type ("> 0"), or the
    choices (then the message reads "one of ...")."""

    ok: Callable[[Any], bool]
    expected: str = ""
    choices: tuple[str, ...] = ()


def _at_least(lo: int | float) -> _Rule:
    return _Rule(lambda v: v >= lo, f">= {lo}")


def _above(lo: int | float) -> _Rule:
    return _Rule(lambda v: v > lo, f"> {lo}")


def _within(lo: int, hi: int) -> _Rule:
    """A sane range: beyond ``hi`` a typo (``1e9``) would allocate gigabytes before anything fails."""
    return _Rule(lambda v: lo <= v <= hi, f"in [{lo}, {hi}]")


def _one_of(choices: tuple[str, ...]) -> _Rule:
    return _Rule(lambda v: v in choices, choices=choices)


_FRACTION = _Rule(lambda v: 0 <= v < 1, "in [0, 1)")
RULES: dict[str, _Rule] = {
    "arch": _one_of(ARCHES),
    "seed": _at_least(0),
    "epochs": _at_least(1),
    "batch_size": _at_least(1),
    "eval_every": _at_least(1),
    "eval_batch_size": _at_least(1),
    "device": _Rule(lambda v: re.fullmatch(DEVICE_PATTERN, v) is not None, choices=DEVICES),
    "num_workers": _at_least(0),
    "data.experts": _Rule(lambda v: len(v) > 0, "with at least one name"),
    "data.max_segments": _Rule(lambda d: all(n >= 1 for n in d.values()), "each >= 1"),
    "data.sampling": _one_of(SAMPLINGS),
    "data.caption_len": _at_least(3),
    "data.val_holdout": _at_least(0),
    "data.shots": _one_of((1, 2, 3)),
    "data.test_protocol": _one_of(TEST_PROTOCOLS),
    "data.caption_noise": _FRACTION,
    "text.mode": _one_of(TEXT_MODES),
    "text.finetune_top_layers": _at_least(1),
    "text.lr": _above(0),
    "optim.name": _one_of(OPTIMIZERS),
    "optim.lr": _above(0),
    "optim.weight_decay": _at_least(0),
    "optim.decay": _Rule(lambda v: 0 < v <= 1, "in (0, 1]"),
    "optim.decay_every": _at_least(1),
    "optim.grad_clip": _above(0),
    "loss.name": _one_of(LOSS_NAMES),
    "loss.margin": _at_least(0),
    "loss.temperature": _above(0),
    "distill.weight": _at_least(0),
    "distill.temperature": _above(0),
    "model.dim": _within(1, 4096),
    "model.num_clusters": _within(1, 512),
    "model.ghost_clusters": _within(0, 64),
    "model.heads": _within(1, 64),
    "model.dropout": _FRACTION,
    "model.attention_layers": _within(0, 24),
    "model.assignment": _one_of(ASSIGNMENTS),
    "model.terms": _one_of(tuple(TERMS)),
    "model.text_global_from": _one_of(TEXT_GLOBAL_FROM),
}


def _expected(key: str) -> str:
    """What ``key`` accepts, in words: "an integer >= 1", "one of ranger, adamw, radam", "... or null"."""
    hint, nullable = _unwrap(_hints()[key])
    rule = RULES.get(key)
    if rule is not None and rule.choices:
        words = "one of " + ", ".join(rule.choices)
    else:
        words = " ".join(w for w in (_type_words(hint), rule.expected if rule else "") if w)
    return words + (" or null" if nullable else "")


def _unknown(given: dict, valid: tuple[str, ...] | list[str], where: str) -> list[str]:
    unknown = sorted(set(given) - set(valid), key=str)
    if not unknown:
        return []
    return [f"unknown config key(s) {unknown} in {where}; valid keys: {', '.join(sorted(valid))}"]


def _convert_all(cfg: TrainConfig) -> dict[str, str]:
    """Convert every value of ``cfg`` in place to its field's type. Returns dotted key (or section) -> one
    line for each value that does not fit (it keeps its given value). Sections are replaced by converted
    copies: the caller's objects stay untouched."""
    hints, problems = _hints(), {}

    def convert(key: str, value: Any) -> Any:
        try:
            return _to_type(value, hints[key])
        except _WrongType:
            problems[key] = f"{key}: got {value!r} ({type(value).__name__}); expected {_expected(key)}"
            return value

    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in SECTIONS:
            cls = SECTIONS[f.name]
            if not isinstance(value, cls):
                problems[f.name] = (
                    f"{f.name}: got {value!r} ({type(value).__name__}); expected a {cls.__name__}"
                )
                continue
            values = {g.name: convert(f"{f.name}.{g.name}", getattr(value, g.name)) for g in fields(cls)}
            setattr(cfg, f.name, cls(**values))
        elif f.name == "model":
            if not isinstance(value, dict):
                problems["model"] = (
                    f"model: got {value!r} ({type(value).__name__}); expected a mapping of model keys"
                )
                continue
            for line in _unknown(value, MODEL_KEYS, "'model'"):
                problems["model (unknown keys)"] = line
            cfg.model = {k: convert(f"model.{k}", v) for k, v in value.items() if k in MODEL_KEYS}
        else:
            setattr(cfg, f.name, convert(f.name, value))
    return problems


def _get(cfg: TrainConfig, key: str) -> Any:
    """The (effective) value of a dotted key; model keys a profile leaves out have ModelConfig's default."""
    head, _, tail = key.partition(".")
    if head == "model":
        return cfg.model.get(tail, MODEL_DEFAULTS[tail])
    return getattr(getattr(cfg, head), tail) if tail else getattr(cfg, head)


def _skip(bad: set[str], *keys: str) -> bool:
    """True when one of ``keys``, or the section holding it, already has a problem."""
    return any(k in bad or k.split(".")[0] in bad for k in keys)


def _range_problems(cfg: TrainConfig, bad: set[str]) -> dict[str, str]:
    problems = {}
    for key, rule in RULES.items():
        if _skip(bad, key):
            continue
        value = _get(cfg, key)
        if value is None or rule.ok(value):
            continue
        verb = "unknown" if rule.choices else "got"
        problems[key] = f"{key}: {verb} {value!r}; expected {_expected(key)}"
    return problems


def _cross_problems(cfg: TrainConfig, bad: set[str]) -> list[str]:
    """Checks that involve more than one key, or a message of their own."""
    problems = []
    if not _skip(bad, "select_metric") and cfg.select_metric not in SELECT_METRICS:
        given = cfg.select_metric
        lower = given.split("_", 1)[-1] in LOWER_IS_BETTER
        what = f"got {given!r}, a lower-is-better metric" if lower else f"unknown {given!r}"
        problems.append(
            f"select_metric: {what}; expected one of {', '.join(SELECT_METRICS)} "
            "(the trainer keeps the epoch with the highest score)"
        )
    if not _skip(bad, "model.heads", "model.dim"):
        heads, dim = _get(cfg, "model.heads"), _get(cfg, "model.dim")
        if dim % heads:
            problems.append(f"model.heads: got {heads}; expected a divisor of model.dim ({dim})")
    if not _skip(bad, "model.dim", "model.num_clusters", "model.attention_layers"):
        k, d, layers = (_get(cfg, f"model.{k}") for k in ("num_clusters", "dim", "attention_layers"))
        if d * d * (k + 12 * layers) > MAX_PARAMETERS:
            problems.append(
                f"model.num_clusters, model.dim, model.attention_layers: got {k}, {d}, {layers}: D*D*(K + 12 "
                f"* layers) = {d * d * (k + 12 * layers):,} parameters (an expert's global text head and the "
                f"self-attention); expected at most {MAX_PARAMETERS:,} (1 GiB in float32)"
            )
    if not _skip(bad, "model.vlad", "model.assignment"):
        problems += _vlad_problems(_get(cfg, "model.vlad"), _get(cfg, "model.assignment"))
    if not _skip(bad, "text.mode", "text.finetune_top_layers", "text.lr") and cfg.text.mode != "finetune":
        for key in ("finetune_top_layers", "lr"):
            if getattr(cfg.text, key) is not None:
                problems.append(
                    f"text.{key}: got {getattr(cfg.text, key)!r}, but text.mode={cfg.text.mode!r} trains no "
                    "text encoder (it would do nothing); expected text.mode=finetune or no text." + key
                )
    presets = {} if _skip(bad, "arch", "model") else ARCH_PRESETS.get(cfg.arch, {})
    for key, value in presets.items():
        if cfg.model.get(key, value) != value and not _skip(bad, f"model.{key}"):
            problems.append(
                f"model.{key}: got {cfg.model[key]!r}; expected {value!r} "
                f"(arch={cfg.arch!r} fixes model.{key}={value!r})"
            )
    if (
        not _skip(bad, "distill.weight", "distill.teacher")
        and cfg.distill.weight > 0
        and not cfg.distill.teacher
    ):
        problems.append(
            f"distill.weight: got {cfg.distill.weight} and no teacher; needs weight >= 0 and, when > 0, "
            "a teacher checkpoint (distill.teacher=path/to/best.pt)"
        )
    if not _skip(bad, "out_dir", "profile", "seed"):
        try:
            cfg.out_dir.format(profile=cfg.profile, seed=cfg.seed)
        except (KeyError, IndexError, ValueError):
            problems.append(
                f"out_dir: got {cfg.out_dir!r}; expected a path whose only placeholders are {{profile}} "
                "and {seed}"
            )
    return problems


def _vlad_problems(spec: dict[str, str], assignment: str) -> list[str]:
    """``model.vlad``: a known kind, only that kind's options (``OPTIONS`` of its class), known choices, and
    no ``bn`` when the assignment has no BatchNorm."""
    kind = spec.get("kind", "shared")
    if kind not in VLAD_KINDS:
        return [f"model.vlad.kind: unknown {kind!r}; expected one of {', '.join(VLAD_KINDS)}"]
    options = VLAD_KINDS[kind].OPTIONS
    problems = []
    for key, value in spec.items():
        if key == "kind":
            continue
        if key not in options:
            takes = f"its options: {', '.join(options)}" if options else "it takes none"
            problems.append(f"model.vlad.{key}: not an option of kind {kind!r} (it would do nothing); "
                            + takes)
        elif value not in options[key]:
            problems.append(f"model.vlad.{key}: unknown {value!r}; expected one of {', '.join(options[key])}")
        elif key == "bn" and assignment != "batchnorm":
            problems.append(f"model.vlad.bn: got {value!r}, but model.assignment={assignment!r} has no "
                            "BatchNorm (it would do nothing); expected model.assignment=batchnorm or no bn")
    return problems


# ---- configs written before the variants became types ----------------------------------------------------

_TERM_NAMES = {flags: name for name, flags in TERMS.items()}


def migrate(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A config dict, possibly with keys of before the config variants became types, in today's keys, and
    what was mapped (one phrase per change, for the notice). A mix of old and new keys is read as old keys
    set on top of the new ones (an override). Old combinations that meant nothing map to what they did:

    - ``model.sharing`` -> ``model.vlad.kind``; ``video_assignment`` / ``bn_sharing`` -> ``model.vlad.
      video_assignment`` / ``bn``, dropped where they did nothing (a kind other than shared; ``bn_sharing``
      with ``assignment: bias``), as are the options of another kind when ``sharing`` changes the kind;
    - ``model.use_local`` / ``use_global`` -> ``model.terms`` (both false never ran: an error);
    - ``model.eval_use_local`` / ``eval_use_global`` dropped: test-time terms are ``evaluate(terms=...)``;
    - ``text.freeze`` / ``cache_states`` -> ``text.mode`` (``cache_states`` without ``freeze`` did nothing:
      finetune); ``finetune_top_layers: 0`` when fine-tuning froze the encoder: frozen; a text ``lr`` without
      fine-tuning did nothing: dropped.
    """
    raw, notes = copy.deepcopy(raw), []
    if isinstance(raw.get("model"), dict):
        notes += _migrate_model(raw["model"])
    if isinstance(raw.get("text"), dict) and {"freeze", "cache_states"} & set(raw["text"]):
        notes += _migrate_text(raw["text"])
    return raw, notes


def _old_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError([f"{key}: got {value!r} ({type(value).__name__}); expected true or false"])
    return value


def _migrate_model(model: dict[str, Any]) -> list[str]:
    notes = []
    vlad = dict(model["vlad"]) if isinstance(model.get("vlad"), dict) else {}
    if "sharing" in model:
        vlad["kind"] = model.pop("sharing")
        options = getattr(VLAD_KINDS.get(vlad["kind"]), "OPTIONS", vlad)  # an unknown kind: checked later
        vlad = {k: v for k, v in vlad.items() if k == "kind" or k in options}
        notes.append("model.sharing -> model.vlad.kind")
    for old, new in (("video_assignment", "video_assignment"), ("bn_sharing", "bn")):
        if old not in model:
            continue
        value, kind = model.pop(old), vlad.get("kind", "shared")
        if kind != "shared":
            notes.append(f"model.{old} dropped (did nothing with sharing={kind!r})")
        elif new == "bn" and model.get("assignment", "batchnorm") != "batchnorm":
            notes.append(f"model.{old} dropped (did nothing with assignment={model['assignment']!r})")
        else:
            vlad[new] = value
            notes.append(f"model.{old} -> model.vlad.{new}")
    if vlad:
        model["vlad"] = vlad
    if "use_local" in model or "use_global" in model:
        now = TERMS.get(str(model.get("terms", "both")), (True, True))
        names = ("use_local", "use_global")
        flags = tuple(_old_bool(f"model.{k}", model.pop(k, was)) for k, was in zip(names, now, strict=True))
        if flags not in _TERM_NAMES:
            raise ConfigError(["model.use_local, model.use_global: both false, no similarity left; expected "
                               "model.terms: one of " + ", ".join(TERMS)])
        model["terms"] = _TERM_NAMES[flags]
        notes.append("model.use_local/use_global -> model.terms")
    for key in ("eval_use_local", "eval_use_global"):
        if key in model:
            model.pop(key)
            notes.append(f"model.{key} dropped (test-time terms are evaluate(..., terms=...))")
    return notes


def _migrate_text(text: dict[str, Any]) -> list[str]:
    given = {k: _old_bool(f"text.{k}", text.pop(k)) for k in ("freeze", "cache_states") if k in text}
    now = text.get("mode", "cached")  # what a key left out keeps
    freeze, cached = given.get("freeze", now != "finetune"), given.get("cache_states", now == "cached")
    text["mode"] = "cached" if freeze and cached else "frozen" if freeze else "finetune"
    notes = ["text.freeze/cache_states -> text.mode"]
    if not freeze and given.get("cache_states"):
        notes[0] += " (cache_states without freeze did nothing)"
    if text["mode"] == "finetune" and text.get("finetune_top_layers") == 0:
        text["mode"] = "frozen"
        text.pop("finetune_top_layers")
        notes.append("text.finetune_top_layers=0 -> text.mode=frozen")
    if text["mode"] != "finetune" and text.get("lr") is not None:
        text.pop("lr")
        notes.append("text.lr dropped (did nothing without fine-tuning)")
    return notes


_NOTICES: set[str] = set()  # what was said already: the runs' identity checks read old configs many times


def _notice(notes: list[str]) -> None:
    """The one line that says what :func:`migrate` mapped (once per process for the same mapping)."""
    line = "config: mapped old keys: " + "; ".join(dict.fromkeys(notes))
    if notes and line not in _NOTICES:
        _NOTICES.add(line)
        print(line, file=sys.stderr)


# ---- building and loading ------------------------------------------------------------------------------


def from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested dicts (``to_dict``'s output round-trips). Keys of older
    configs are mapped (:func:`migrate`), with one line on stderr saying what was mapped.

    Raises:
        ConfigError: unknown keys (by name, with the valid ones) and bad values, one line each.
    """
    raw, notes = migrate(raw)
    _notice(notes)
    problems = _unknown(raw, [f.name for f in fields(TrainConfig)], "the top level")
    sections = {}
    for name, cls in SECTIONS.items():
        part = raw.pop(name, None) or {}
        if not isinstance(part, dict):
            problems.append(
                f"{name}: got {part!r} ({type(part).__name__}); expected a mapping of {name}.* keys"
            )
            part = {}
        valid = [f.name for f in fields(cls)]
        problems += _unknown(part, valid, f"'{name}'")
        sections[name] = cls(**{k: v for k, v in part.items() if k in valid})
    top = {k: v for k, v in raw.items() if k in {f.name for f in fields(TrainConfig)}}
    model = top.pop("model", None) or {}
    top["model"] = dict(model) if isinstance(model, dict) else model  # not a dict: reported by TrainConfig
    try:
        cfg = TrainConfig(**top, **sections)
    except ConfigError as err:
        raise ConfigError(problems + err.problems) from None
    if problems:
        raise ConfigError(problems)
    return cfg


def _yaml(text: str, where: str) -> Any:
    """``text`` read as YAML; a syntax error is one line naming ``where``, the line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError([f"{where}: not valid YAML{at}: {what}"]) from None


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

    Run directory: the plain profile keeps ``out_dir = "runs/{profile}-seed{seed}"``. A variant, whose
    overrides change any key other than ``seed`` and the runtime-only keys of :data:`RUNTIME_KEYS`
    (device, num_workers, eval_batch_size, out_dir, amp), gets ``runs/{profile}-<6 hex>-seed{seed}``,
    the hex a hash of the differing keys and their converted values (so neither the order of the
    overrides nor the spelling ``2e-3`` / ``0.002`` matters, and overriding a key to the profile's own
    value changes nothing). ``epochs`` counts although resuming ignores it: a run with more epochs is a
    different result, and sharing a directory would let ``train_or_load`` hand back the shorter run's
    model and a fresh run overwrite it (to extend a run with ``--resume``, give its ``out_dir``). An
    ``out_dir`` set in the profile or the overrides is used as given.

    Raises:
        ValueError: unknown profile; a :class:`ConfigError` for unknown keys (listing the valid ones) and
        bad values, one line each.
    """
    path = Path(profile)
    if not path.suffix:
        path = PROFILES_DIR / f"{profile}.yaml"
        if not path.exists():
            raise ValueError(f"unknown profile {profile!r}; valid: {', '.join(available_profiles())}")
    elif not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    raw = _yaml(path.read_text(), str(path)) or {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: got a {type(raw).__name__}; expected a mapping of config keys"])
    raw.setdefault("profile", path.stem)
    items = list(overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides or []))
    raw, notes = migrate(raw)
    full = copy.deepcopy(raw)
    for key, value in items:  # an old key overrides the new key it maps to
        _set(full, key, value)
        full, more = migrate(full)
        notes += more
    _notice(notes)
    cfg = from_dict(full)
    explicit = "out_dir" in raw or any(key == "out_dir" for key, _ in items)
    tag = None if explicit or not items else _variant_tag(raw, cfg)
    if tag:
        cfg.out_dir = VARIANT_OUT_DIR.replace("{variant}", tag)
    return cfg


def _variant_tag(profile_raw: dict[str, Any], cfg: TrainConfig) -> str | None:
    """6 hex digits of a hash of the training-relevant keys where ``cfg`` differs from its profile, or
    None when it does not (model keys compared with ModelConfig's defaults filled in)."""
    ignored = set(RUNTIME_KEYS) | {"seed", "profile"}
    try:
        base = from_dict(profile_raw)
    except ConfigError:  # a profile that is valid only with its overrides: compare with the defaults
        base = TrainConfig(profile=cfg.profile)
    a, b = base.to_dict(), cfg.to_dict()
    for d in (a, b):
        d["model"] = {**MODEL_DEFAULTS, **d["model"]}
    diff = [k for k in config_diff(a, b) if k.split(".")[0] not in ignored]
    if not diff:
        return None
    values = {k: lookup(b, k, "<unset>") for k in diff}
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:6]


_NO_DEFAULT = object()


def lookup(d: dict[str, Any], dotted: str, default: Any = _NO_DEFAULT) -> Any:
    """The value at a dotted key of nested dicts (``lookup(cfg.to_dict(), "model.num_clusters")``):
    ``default`` where the key is absent, a ``KeyError`` naming the key when no default is given."""
    node: Any = d
    for k in dotted.split("."):
        if not isinstance(node, dict) or k not in node:
            if default is _NO_DEFAULT:
                raise KeyError(dotted)
            return default
        node = node[k]
    return node


def parse_override(text: str) -> tuple[str, Any]:
    """``"model.num_clusters=16"`` -> ("model.num_clusters", 16): the value is read as YAML."""
    if "=" not in text:
        raise ValueError(f"override {text!r} is not of the form key=value (e.g. model.num_clusters=16)")
    key, value = text.split("=", 1)
    return key.strip(), _yaml(value, f"override {text!r}")


# Keys that never change what a run learns or scores: a checkpoint made with other values is the same run.
RUNTIME_KEYS = ("device", "num_workers", "eval_batch_size", "out_dir", "amp")


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
