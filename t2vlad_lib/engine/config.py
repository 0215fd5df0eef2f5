"""Training configuration: dataclasses with defaults, named profiles in ``t2vlad_lib/configs/*.yaml``.

    cfg = load_config("tutorial", overrides=["epochs=3", "model.num_clusters=16"])

Profiles: ``tutorial`` (DigitClips on a CPU in minutes), ``tutorial-finetune`` (the same with MiniLM
fine-tuned inside the model at its own lr; only the text section differs), ``fast`` (tests and notebooks
under ``T2VLAD_FAST=1``), ``msrvtt-1ka`` (the paper: MSRVTT 1k-A features, BERT-base fine-tuned, D=768, K=9),
and, by path, ``configs/extra/etva-msrvtt.yaml`` (msrvtt-1ka with ALBERT-base as the text encoder,
ETVA; no ALBERT weights can be had offline here, so only a tiny random ``AlbertConfig`` is tested).
A profile file may be a path too. Unknown keys are an error that lists the valid ones.

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
from ..model.t2vlad import ModelConfig
from ..model.vlad import BN_SHARING, SHARING_MODES, VIDEO_ASSIGNMENTS

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
]

PROFILES_DIR = Path(__file__).resolve().parents[1] / "configs"
# ModelConfig fields a profile may set; expert_dims and text_dim come from the data and the text encoder.
MODEL_KEYS = tuple(f.name for f in fields(ModelConfig) if f.name not in ("expert_dims", "text_dim"))
# Choices that the code checks inline (``RetrievalDataset``, ``NetVLAD``, ``ModelConfig``, ``prepare``).
SAMPLINGS = ("uniform", "truncate")
TEST_PROTOCOLS = ("fixed", "all")
ASSIGNMENTS = ("batchnorm", "bias")
TEXT_GLOBAL_FROM = ("vlad", "cls")
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
        problems += _cross_problems(self, set(bad))
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
MODEL_DEFAULTS = {f.name: f.default for f in fields(ModelConfig) if f.name in MODEL_KEYS}


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
    "data.max_segments": _Rule(lambda d: all(n >= 1 for n in d.values()), "each >= 1"),
    "data.sampling": _one_of(SAMPLINGS),
    "data.caption_len": _at_least(3),
    "data.val_holdout": _at_least(0),
    "data.shots": _one_of((1, 2, 3)),
    "data.test_protocol": _one_of(TEST_PROTOCOLS),
    "data.caption_noise": _FRACTION,
    "text.finetune_top_layers": _at_least(0),
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
    "model.dim": _at_least(1),
    "model.num_clusters": _at_least(1),
    "model.ghost_clusters": _at_least(0),
    "model.heads": _at_least(1),
    "model.dropout": _FRACTION,
    "model.attention_layers": _at_least(0),
    "model.sharing": _one_of(SHARING_MODES),
    "model.assignment": _one_of(ASSIGNMENTS),
    "model.video_assignment": _one_of(VIDEO_ASSIGNMENTS),
    "model.bn_sharing": _one_of(BN_SHARING),
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
        if heads >= 1 and dim >= 1 and dim % heads:
            problems.append(f"model.heads: got {heads}; expected a divisor of model.dim ({dim})")
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


# ---- building and loading ------------------------------------------------------------------------------


def from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested dicts (``to_dict``'s output round-trips).

    Raises:
        ConfigError: unknown keys (by name, with the valid ones) and bad values, one line each.
    """
    raw = dict(raw)
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
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: got a {type(raw).__name__}; expected a mapping of config keys"])
    raw.setdefault("profile", path.stem)
    items = list(overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides or []))
    full = copy.deepcopy(raw)
    for key, value in items:
        _set(full, key, value)
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
    return key.strip(), _parse_value(value)


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
