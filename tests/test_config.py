"""Profiles, overrides, typed and range-checked values, run directories of variants, unknown keys, the
optimisers and checkpoint files."""

import errno
import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from t2vlad_lib.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from t2vlad_lib.engine import config, pipeline
from t2vlad_lib.engine.config import (
    PROFILES_DIR,
    SELECT_METRICS,
    ConfigError,
    TrainConfig,
    available_profiles,
    from_dict,
    load_config,
    migrate,
)
from t2vlad_lib.engine.runs import check_config
from t2vlad_lib.model.losses import LOSS_NAMES, make_ranking_loss
from t2vlad_lib.model.optim import OPTIMIZERS, Lookahead, make_optimizer, make_scheduler

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "data_samples" / "msrvtt-fixture"


def test_profiles_load_and_match_the_paper_where_they_should():
    assert {"tutorial", "fast", "msrvtt-1ka"} <= set(available_profiles())
    paper = load_config("msrvtt-1ka")
    assert (paper.model["dim"], paper.model["num_clusters"], paper.batch_size) == (768, 9, 64)
    assert (paper.loss.name, paper.loss.margin, paper.optim.name, paper.optim.lr) == (
        "max_margin",
        0.02,
        "ranger",
        1e-4,
    )
    assert paper.text.model == "bert-base-uncased" and not paper.text.freeze
    for name in ("tutorial", "fast"):
        cfg = load_config(name)
        assert cfg.text.model == "minilm" and cfg.text.freeze and cfg.profile == name
        cfg.model_config({"appearance": 64}, 384)  # every model key is a ModelConfig field


def test_overrides_are_typed_and_nested():
    cfg = load_config(
        "fast", ["epochs=7", "model.num_clusters=16", "optim.lr=0.003", "data.experts=[motion]"]
    )
    assert cfg.epochs == 7 and cfg.model["num_clusters"] == 16 and cfg.optim.lr == 0.003
    assert cfg.data.experts == ["motion"]
    assert load_config("fast", {"model.vlad.kind": "separate"}).model["vlad"] == {"kind": "separate"}


@pytest.mark.parametrize(
    "override, where",
    [("epoch=3", "top level"), ("model.clusters=3", "'model'"), ("optim.learning_rate=1", "'optim'")],
)
def test_unknown_keys_list_the_valid_ones(override, where):
    with pytest.raises(ValueError) as err:
        load_config("fast", [override])
    msg = str(err.value)
    assert where in msg and "valid keys" in msg
    assert override.split("=")[0].split(".")[-1] in msg


def test_unknown_profile_and_bad_override():
    with pytest.raises(ValueError, match="valid: .*tutorial"):
        load_config("tutorail")
    with pytest.raises(ValueError, match="key=value"):
        load_config("fast", ["epochs"])


def _error(overrides, profile="tutorial") -> list[str]:
    """The lines of the ConfigError that loading ``profile`` with ``overrides`` raises."""
    with pytest.raises(ConfigError) as err:
        load_config(profile, overrides)
    assert isinstance(err.value, ValueError) and str(err.value).splitlines() == err.value.problems
    assert pickle.loads(pickle.dumps(err.value)).problems == err.value.problems  # e.g. from a worker
    return err.value.problems


def test_lr_written_without_a_dot_is_a_float_all_the_way_to_the_optimiser():
    cfg = load_config("fast", ["optim.lr=2e-3", "loss.margin=1", "optim.decay_every=5"])
    assert cfg.optim.lr == 0.002 and type(cfg.optim.lr) is float  # PyYAML reads "2e-3" as a string
    assert type(cfg.loss.margin) is float and type(cfg.optim.decay_every) is int
    opt = make_optimizer(
        [torch.nn.Parameter(torch.zeros(1))], cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay
    )
    make_scheduler(opt, cfg.optim.decay, cfg.optim.decay_every)
    assert opt.param_groups[0]["lr"] == 0.002 and type(opt.param_groups[0]["lr"]) is float
    assert make_ranking_loss(cfg.loss.name, cfg.loss.margin).margin == 1.0


@pytest.mark.parametrize(
    "override, value",
    [
        ("epochs=1e3", 1000),  # an integral number written as a (YAML) string
        ("optim.weight_decay=0", 0.0),
        ("optim.grad_clip=null", None),
        ("data.fast=true", True),
        ("data.layout=null", None),
        ("data.experts=[motion]", ["motion"]),
        ("data.max_segments={appearance: 8}", {"appearance": 8}),
        ("text.mode=frozen", "frozen"),
        ("model.heads=8", 8),
        ("model.terms=local", "local"),
        ("model.vlad.kind=separate", "separate"),
        ("device=cuda:1", "cuda:1"),
        ("optim.decay=1", 1.0),
    ],
)
def test_values_are_converted_to_the_field_type(override, value):
    key = override.split("=")[0]
    cfg = load_config("tutorial", [override])
    got = cfg.to_dict()
    for part in key.split("."):
        got = got[part]
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    "override, line",
    [
        ("batch_size=0", "batch_size: got 0; expected an integer >= 1"),
        ("epochs=0", "epochs: got 0; expected an integer >= 1"),
        ("batch_size=many", "batch_size: got 'many' (str); expected an integer >= 1"),
        ("epochs=2.5", "epochs: got 2.5 (float); expected an integer >= 1"),
        ("epochs=true", "epochs: got True (bool); expected an integer >= 1"),
        ("optim.lr=-1", "optim.lr: got -1.0; expected a float > 0"),
        ("optim.lr=null", "optim.lr: got None (NoneType); expected a float > 0"),
        ("data.fast=1", "data.fast: got 1 (int); expected true or false or null"),
        ("data.fast=maybe", "data.fast: got 'maybe' (str); expected true or false or null"),
        (
            "data.experts=motion",
            "data.experts: got 'motion' (str); expected a list of strings with at least one name or null",
        ),
        (
            "data.max_segments=[8]",
            "data.max_segments: got [8] (list); expected a mapping of names to integers each >= 1",
        ),
        (
            "select_metric=t2v_R2",
            f"select_metric: unknown 't2v_R2'; expected one of {', '.join(SELECT_METRICS)} "
            "(the trainer keeps the epoch with the highest score)",
        ),
        ("loss.name=foo", "loss.name: unknown 'foo'; expected one of " + ", ".join(LOSS_NAMES)),
        ("optim.name=sgd", "optim.name: unknown 'sgd'; expected one of " + ", ".join(OPTIMIZERS)),
        ("eval_every=0", "eval_every: got 0; expected an integer >= 1"),
        ("eval_batch_size=0", "eval_batch_size: got 0; expected an integer >= 1"),
        ("num_workers=-1", "num_workers: got -1; expected an integer >= 0"),
        ("optim.weight_decay=-1e-4", "optim.weight_decay: got -0.0001; expected a float >= 0"),
        ("optim.decay=0", "optim.decay: got 0.0; expected a float in (0, 1]"),
        ("optim.decay=1.5", "optim.decay: got 1.5; expected a float in (0, 1]"),
        ("optim.decay_every=0", "optim.decay_every: got 0; expected an integer >= 1"),
        ("optim.grad_clip=0", "optim.grad_clip: got 0.0; expected a float > 0 or null"),
        ("loss.margin=-0.1", "loss.margin: got -0.1; expected a float >= 0"),
        ("loss.temperature=0", "loss.temperature: got 0.0; expected a float > 0 or null"),
        ("data.test_protocol=some", "data.test_protocol: unknown 'some'; expected one of fixed, all"),
        ("data.sampling=random", "data.sampling: unknown 'random'; expected one of uniform, truncate"),
        ("data.caption_len=2", "data.caption_len: got 2; expected an integer >= 3"),
        ("data.val_holdout=-1", "data.val_holdout: got -1; expected an integer >= 0"),
        ("model.dim=0", "model.dim: got 0; expected an integer in [1, 4096]"),
        ("model.num_clusters=0", "model.num_clusters: got 0; expected an integer in [1, 512]"),
        ("model.ghost_clusters=-1", "model.ghost_clusters: got -1; expected an integer in [0, 64]"),
        ("model.heads=0", "model.heads: got 0; expected an integer in [1, 64]"),
        ("model.heads=3", "model.heads: got 3; expected a divisor of model.dim (128)"),
        ("model.dropout=1", "model.dropout: got 1.0; expected a float in [0, 1)"),
        ("model.attention_layers=-1", "model.attention_layers: got -1; expected an integer in [0, 24]"),
        (
            "model.vlad.kind=both",
            "model.vlad.kind: unknown 'both'; expected one of shared, separate, text_only",
        ),
        ("model.terms=none", "model.terms: unknown 'none'; expected one of both, local, global"),
        ("text.mode=trained", "text.mode: unknown 'trained'; expected one of cached, frozen, finetune"),
        ("model.assignment=softmax", "model.assignment: unknown 'softmax'; expected one of batchnorm, bias"),
        ("model.text_global_from=mean", "model.text_global_from: unknown 'mean'; expected one of vlad, cls"),
        ("text.finetune_top_layers=0", "text.finetune_top_layers: got 0; expected an integer >= 1 or null"),
        ("model.num_clusters=1e9", "model.num_clusters: got 1000000000; expected an integer in [1, 512]"),
        (
            "data.experts=[]",
            "data.experts: got []; expected a list of strings with at least one name or null",
        ),
        ("text.lr=0", "text.lr: got 0.0; expected a float > 0 or null"),
        ("device=gpu", "device: unknown 'gpu'; expected one of cpu, cuda, cuda:N, mps or null"),
        ("device=cuda:x", "device: unknown 'cuda:x'; expected one of cpu, cuda, cuda:N, mps or null"),
        (
            "out_dir=runs/{name}",
            "out_dir: got 'runs/{name}'; expected a path whose only placeholders are {profile} and {seed}",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_key_value_and_expectation(override, line):
    assert _error([override]) == [line]


@pytest.mark.parametrize(
    "overrides, line",
    [
        (
            ["model.vlad.kind=separate", "model.vlad.video_assignment=trainable"],
            "model.vlad.video_assignment: not an option of kind 'separate' (it would do nothing); it takes "
            "none",
        ),
        (
            ["model.vlad.kind=text_only", "model.vlad.bn=shared"],
            "model.vlad.bn: not an option of kind 'text_only' (it would do nothing); it takes none",
        ),
        (
            ["model.vlad.bnn=shared"],
            "model.vlad.bnn: not an option of kind 'shared' (it would do nothing); its options: "
            "video_assignment, bn",
        ),
        (
            ["model.vlad.video_assignment=frozen"],
            "model.vlad.video_assignment: unknown 'frozen'; expected one of detached, trainable",
        ),
        (
            ["model.assignment=bias", "model.vlad.bn=per_modality"],
            "model.vlad.bn: got 'per_modality', but model.assignment='bias' has no BatchNorm (it would do "
            "nothing); expected model.assignment=batchnorm or no bn",
        ),
        (
            ["text.finetune_top_layers=2"],
            "text.finetune_top_layers: got 2, but text.mode='cached' trains no text encoder (it would do "
            "nothing); expected text.mode=finetune or no text.finetune_top_layers",
        ),
        (
            ["text.mode=frozen", "text.lr=1e-4"],
            "text.lr: got 0.0001, but text.mode='frozen' trains no text encoder (it would do nothing); "
            "expected text.mode=finetune or no text.lr",
        ),
        (
            ["model.dim=4096", "model.num_clusters=16"],
            "model.num_clusters, model.dim, model.attention_layers: got 16, 4096, 1: D*D*(K + 12 * layers) = "
            "469,762,048 parameters (an expert's global text head and the self-attention); expected at most "
            "268,435,456 (1 GiB in float32)",
        ),
        (
            ["arch=ce", "model.terms=both"],
            "model.terms: got 'both'; expected 'global' (arch='ce' fixes model.terms='global')",
        ),
        # two combinations of old keys that passed the check and failed after data preparation
        (
            ["model.use_local=false", "model.use_global=false"],
            "model.use_local, model.use_global: both false, no similarity left; expected model.terms: one "
            "of both, local, global",
        ),
        (
            ["text.freeze=true", "text.finetune_top_layers=2"],
            "text.finetune_top_layers: got 2, but text.mode='cached' trains no text encoder (it would do "
            "nothing); expected text.mode=finetune or no text.finetune_top_layers",
        ),
    ],
)
def test_each_cross_field_rule_is_one_line_at_load(overrides, line):
    assert _error(overrides) == [line]


def test_the_options_of_each_kind_and_mode_load():
    cfg = load_config("tutorial", ["model.vlad.video_assignment=trainable", "model.vlad.bn=shared"])
    assert cfg.model["vlad"] == {"kind": "shared", "video_assignment": "trainable", "bn": "shared"}
    assert load_config("tutorial", ["model.assignment=bias"]).model["vlad"] == {"kind": "shared"}
    tuned = load_config("tutorial", ["text.mode=finetune", "text.finetune_top_layers=2", "text.lr=1e-4"])
    assert (tuned.text.mode, tuned.text.finetune_top_layers, tuned.text.freeze) == ("finetune", 2, False)
    assert load_config("tutorial", ["text.mode=frozen"]).text.freeze


OLD = {
    "model.sharing": "separate",
    "model.use_global": False,
    "text.freeze": False,
    "text.cache_states": False,
    "text.finetune_top_layers": 2,
}
NEW = {
    "model.vlad.kind": "separate",
    "model.terms": "local",
    "text.mode": "finetune",
    "text.finetune_top_layers": 2,
}


def test_old_keys_in_overrides_map_to_the_new_ones_with_one_line(capsys):
    new = load_config("tutorial", NEW)
    assert capsys.readouterr().err == ""
    old = load_config("tutorial", OLD)
    assert capsys.readouterr().err == (
        "config: mapped old keys: model.sharing -> model.vlad.kind; model.use_local/use_global -> "
        "model.terms; text.freeze/cache_states -> text.mode\n"
    )
    assert old == new and old.run_dir() == new.run_dir() and old.to_dict() == new.to_dict()
    # an old key set after a new one overrides it, and the other way round
    assert load_config("fast", ["model.vlad.kind=text_only", "model.sharing=separate"]).model["vlad"] == {
        "kind": "separate"
    }
    assert load_config("fast", ["text.freeze=false", "text.mode=frozen"]).text.mode == "frozen"


def test_an_old_profile_file_loads_as_the_new_profile(tmp_path, capsys):
    import yaml

    raw = yaml.safe_load((PROFILES_DIR / "tutorial.yaml").read_text())
    assert raw["model"].pop("vlad") == {"kind": "shared"} and raw["text"].pop("mode") == "cached"
    raw["model"]["sharing"] = "shared"
    raw["text"].update(freeze=True, cache_states=True)
    path = tmp_path / "tutorial.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_config(path) == load_config("tutorial")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.sharing -> model.vlad.kind" in err and "text.mode" in err


@pytest.mark.parametrize(
    "old, new, note",
    [
        (
            {"text": {"freeze": False, "cache_states": True}},
            {"text": {"mode": "finetune"}},
            "text.freeze/cache_states -> text.mode (cache_states without freeze did nothing)",
        ),
        (
            {"text": {"freeze": True, "cache_states": False}},
            {"text": {"mode": "frozen"}},
            "text.freeze/cache_states -> text.mode",
        ),
        (
            {"text": {"freeze": False, "cache_states": False, "finetune_top_layers": 0}},
            {"text": {"mode": "frozen"}},
            "text.finetune_top_layers=0 -> text.mode=frozen",
        ),
        (
            {"text": {"freeze": True, "cache_states": True, "lr": 1e-4}},
            {"text": {"mode": "cached"}},
            "text.lr dropped (did nothing without fine-tuning)",
        ),
        (
            {"model": {"sharing": "separate", "video_assignment": "trainable"}},
            {"model": {"vlad": {"kind": "separate"}}},
            "model.video_assignment dropped (did nothing with sharing='separate')",
        ),
        (
            {"model": {"assignment": "bias", "bn_sharing": "shared"}},
            {"model": {"assignment": "bias"}},
            "model.bn_sharing dropped (did nothing with assignment='bias')",
        ),
        (
            {"model": {"video_assignment": "trainable", "bn_sharing": "shared"}},
            {"model": {"vlad": {"video_assignment": "trainable", "bn": "shared"}}},
            "model.bn_sharing -> model.vlad.bn",
        ),
        (
            {"model": {"use_local": False}},
            {"model": {"terms": "global"}},
            "model.use_local/use_global -> model.terms",
        ),
        (
            {"model": {"eval_use_global": False, "eval_use_local": None}},
            {"model": {}},
            "model.eval_use_global dropped (test-time terms are evaluate(..., terms=...))",
        ),
    ],
)
def test_old_combinations_map_to_what_they_did(old, new, note, capsys, monkeypatch):
    monkeypatch.setattr(config, "_NOTICES", set())  # the notice is said once per process
    migrated, notes = migrate(old)
    assert migrated == new and note in notes
    assert from_dict(old) == from_dict(new)
    assert capsys.readouterr().err.count("\n") == 1  # from_dict(old) said so in one line, from_dict(new) not


def test_an_old_config_json_and_checkpoint_load(tmp_path, capsys, monkeypatch):
    """A run written before the keys changed: its config.json loads as today's config, a directory holding it
    counts as finished for today's config, resuming accepts it, and ``load_run`` builds the same model."""
    from helpers import small_run

    monkeypatch.setattr(config, "_NOTICES", set())  # the notice is said once per process

    from t2vlad_lib.engine.pipeline import prepare
    from t2vlad_lib.engine.runs import build_model, load_run, run_state

    # the shipped base run's config.json as it was written before the keys changed
    stored = json.loads((ROOT / "tests" / "fixtures" / "old_config_base_seed0.json").read_text())
    assert stored["model"]["sharing"] == "shared" and stored["text"]["freeze"] is True
    here = load_config("tutorial", {"out_dir": stored["out_dir"]})
    assert from_dict(stored) == here
    check_config("config.json", stored, here.to_dict())  # resume compares it as today's config

    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))
    cfg = load_config("fast", small_run(tmp_path / "run", **{"model.vlad.kind": "separate"}))
    old = cfg.to_dict()
    old["model"]["sharing"] = old["model"].pop("vlad")["kind"]
    old["text"] = {
        **{k: v for k, v in old["text"].items() if k != "mode"},
        "freeze": True,
        "cache_states": True,
    }
    data = prepare(cfg, verbose=False)
    model = build_model(cfg, data)
    cfg.run_dir().mkdir(parents=True)
    save_checkpoint(
        cfg.run_dir() / "best.pt", {"model": model.state_dict(), "config": old, "data": data.identity()}
    )
    (cfg.run_dir() / "results.json").write_text(json.dumps({"test": {}, "config": old}))
    config._NOTICES.clear()  # said above for the shipped config: say it again for this run
    capsys.readouterr()
    assert run_state(cfg.run_dir(), cfg) == "finished"
    run = load_run(cfg.run_dir(), data=data, cfg=cfg)
    assert run.cfg == cfg and type(run.model.vlad).__name__ == "SeparateVLAD"
    assert (
        capsys.readouterr().err == "config: mapped old keys: model.sharing -> model.vlad.kind; "
        "text.freeze/cache_states -> text.mode\n"
    )


@pytest.mark.parametrize(
    "args, names",
    [
        (["--set", "data.experts=[]"], "data.experts: got []"),
        (
            ["--set", "model.num_clusters=1e9"],
            "model.num_clusters: got 1000000000; expected an integer in [1, 512]",
        ),
        (
            ["--set", "data.experts=[motion"],
            "override 'data.experts=[motion': not valid YAML (line 1, column 8)",
        ),
        (
            ["--set", "model.vlad.kind=separate", "model.vlad.bn=shared"],
            "model.vlad.bn: not an option of kind",
        ),
    ],
)
def test_cli_refuses_bad_configs_in_one_line_at_load(args, names, tmp_path, capsys):
    from t2vlad_lib import cli

    code = cli.main(["train", "--profile", "fast", "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: " + names) and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_cli_names_a_profile_file_with_a_yaml_syntax_error(tmp_path, capsys):
    from t2vlad_lib import cli

    path = tmp_path / "mine.yaml"
    path.write_text("epochs: 2\nmodel:\n  dim: [64\n  heads: 4\n")
    code = cli.main(["train", "--profile", str(path)])
    err = capsys.readouterr().err
    assert (
        code == 2
        and err.startswith(f"error: {path}: not valid YAML (line 4, column ")
        and err.count("\n") == 1
    )


def test_lower_is_better_metrics_are_refused_for_model_selection():
    (line,) = _error(["select_metric=t2v_MedR"])
    assert line.startswith("select_metric: got 't2v_MedR', a lower-is-better metric; expected one of t2v_R1")
    assert "highest score" in line and not any("Med" in m or "Mean" in m for m in SELECT_METRICS)


def test_all_problems_of_a_config_come_together_one_line_each():
    problems = _error(["batch_size=0", "loss.name=foo"])
    assert problems == [
        "batch_size: got 0; expected an integer >= 1",
        "loss.name: unknown 'foo'; expected one of max_margin, hardest, infonce",
    ]
    problems = _error(["model.clusters=4", "epochs=0", "optim.lr=fast"])
    assert len(problems) == 3 and "unknown config key(s) ['clusters'] in 'model'; valid keys:" in problems[0]
    assert problems[1:] == [
        "epochs: got 0; expected an integer >= 1",
        "optim.lr: got 'fast' (str); expected a float > 0",
    ]


def test_a_bad_value_in_a_profile_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("epochs: 2\noptim:\n  lr: 5e-4\n  decay: 1.5\nmodel:\n  dim: 48\n  heads: 5\n")
    assert _error(None, path) == [
        "optim.decay: got 1.5; expected a float in (0, 1]",
        "model.heads: got 5; expected a divisor of model.dim (48)",
    ]
    path.write_text("epochs: 2\noptim:\n  lr: 5e-4\n")  # 5e-4 without a dot: a string to YAML
    cfg = load_config(path)
    assert cfg.profile == "mine" and cfg.optim.lr == 0.0005 and type(cfg.optim.lr) is float


def test_configs_round_trip_through_plain_dicts():
    configs = [load_config(name) for name in available_profiles()]
    configs += [load_config(PROFILES_DIR / "extra" / "etva-msrvtt.yaml"), TrainConfig()]
    configs.append(
        load_config("fast", ["optim.lr=2e-3", "data.experts=[motion]", "data.max_segments={motion: 4}"])
    )
    for cfg in configs:
        plain = json.loads(json.dumps(cfg.to_dict()))  # JSON types only (checkpoints, config.json)
        assert plain == cfg.to_dict() and from_dict(plain) == cfg
        assert from_dict(plain).run_dir() == cfg.run_dir()


def test_no_validation_split_is_an_error_from_prepare(tmp_path, monkeypatch):
    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))

    def no_loading(*args, **kwargs):
        raise AssertionError("prepare must refuse the config before it reads any split")

    monkeypatch.setattr(pipeline, "load_split", no_loading)
    over = {
        "data.dataset": str(FIXTURE),
        "data.val_holdout": 0,  # the profile holds out 500
        "text.model": "tiny-random-bert",
        "model.text_proj": True,
        "device": "cpu",
        "out_dir": str(tmp_path / "run"),
    }
    cfg = load_config("msrvtt-1ka", over)
    assert cfg.data.layout == "msrvtt-1k-a"
    with pytest.raises(ConfigError) as err:
        pipeline.prepare(cfg, verbose=False)
    (line,) = str(err.value).splitlines()
    assert str(FIXTURE) in line and "'msrvtt-1k-a'" in line and "no validation list" in line
    assert line.endswith("set data.val_holdout=N to hold out N training videos for model selection")
    # the other way round: a layout with a validation list takes no held-out videos
    cfg = load_config("msrvtt-1ka", {**over, "data.layout": "msrvtt-full", "data.val_holdout": 2})
    with pytest.raises(ConfigError, match="data.val_holdout: got 2; expected 0: layout 'msrvtt-full'"):
        pipeline.prepare(cfg, verbose=False)


def test_run_directory_of_the_plain_profile_and_of_variants():
    assert load_config("tutorial").run_dir() == Path("runs/tutorial-seed0")
    variant = load_config("tutorial", ["model.num_clusters=16"]).run_dir()
    assert variant.parent == Path("runs") and variant != Path("runs/tutorial-seed0")
    name = variant.name
    assert (
        name.startswith("tutorial-") and name.endswith("-seed0") and len(name) == len("tutorial--seed0") + 6
    )
    assert all(c in "0123456789abcdef" for c in name[len("tutorial-") : -len("-seed0")])
    assert load_config("tutorial", {"model.num_clusters": 16}).run_dir() == variant  # stable across calls
    assert load_config("tutorial", ["model.num_clusters=16", "seed=2"]).run_dir() == variant.with_name(
        name.replace("seed0", "seed2")
    )
    assert load_config("tutorial", ["model.num_clusters=12"]).run_dir() != variant


def test_run_directory_is_stable_across_processes():
    code = (
        "from t2vlad_lib.engine.config import load_config\n"
        "print(load_config('tutorial', ['model.num_clusters=16']).run_dir())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert Path(out.stdout.strip()) == load_config("tutorial", ["model.num_clusters=16"]).run_dir()


def test_run_directory_ignores_spelling_order_runtime_keys_and_own_values():
    a = load_config("tutorial", ["optim.lr=3e-3", "model.num_clusters=16"]).run_dir()
    assert a == load_config("tutorial", ["model.num_clusters=16", "optim.lr=0.003"]).run_dir()
    assert a == load_config("tutorial", {"model.num_clusters": 16.0, "optim.lr": "3.0e-3"}).run_dir()
    plain = Path("runs/tutorial-seed0")
    own = [
        "optim.lr=2e-3",
        "model.num_clusters=9",
        "arch=t2vlad",
        "model.attention_layers=1",
    ]  # values it has
    assert load_config("tutorial", own).run_dir() == plain
    runtime = ["device=cpu", "num_workers=2", "eval_batch_size=8", "amp=false"]
    assert load_config("tutorial", runtime).run_dir() == plain
    assert load_config("tutorial", ["seed=1"]).run_dir() == Path("runs/tutorial-seed1")
    assert load_config("tutorial", ["epochs=30"]).run_dir() != plain  # more epochs: another result
    explicit = load_config("tutorial", ["model.num_clusters=16", "out_dir=runs/mine-{seed}"])
    assert explicit.run_dir() == Path("runs/mine-0")


def test_lookahead_interpolates_every_k_steps():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = Lookahead(torch.optim.SGD([p], lr=0.1), k=2, alpha=0.5)
    for _ in range(2):
        p.grad = torch.tensor([1.0])
        opt.step()
    # fast: 1 -> 0.9 -> 0.8; slow: 1 + 0.5 * (0.8 - 1) = 0.9, and fast is reset to slow
    assert torch.allclose(p.data, torch.tensor([0.9]))
    state = opt.state_dict()
    q = torch.nn.Parameter(torch.tensor([5.0]))
    other = Lookahead(torch.optim.SGD([q], lr=0.1), k=2, alpha=0.5)
    other.load_state_dict(state)
    assert other.steps == 2 and torch.allclose(other.slow[0][0], torch.tensor([0.9]))


def test_step_decay_schedule():
    p = torch.nn.Parameter(torch.zeros(1))
    for name in ("ranger", "adamw", "radam"):
        opt = make_optimizer([p], name, lr=1.0, weight_decay=0.0)
        sched = make_scheduler(opt, decay=0.9, every_epochs=5)
        lrs = []
        for _ in range(11):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert (
            lrs[4] == pytest.approx(1.0) and lrs[5] == pytest.approx(0.9) and lrs[10] == pytest.approx(0.81)
        )
    with pytest.raises(ValueError, match="valid: ranger"):
        make_optimizer([p], "ranger2", 1.0, 0.0)


def test_checkpoint_atomic_truncated_and_mismatch(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "config": {"seed": 0, "model": {"dim": 8}}})
    good = path.read_bytes()
    # a truncated copy is refused with a clear message
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(bad)

    # a failing write (the disk fills up mid-file) leaves the previous good file and no temp file behind
    real_save = torch.save

    def full_disk(obj, fh):
        fh.write(b"PK partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "config": {}})
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == good

    class Code:  # not a plain value: refused before anything is written
        def __reduce__(self):
            return (print, ("hello",))

    with pytest.raises(TypeError, match="tensors and plain values only, not Code"):
        save_checkpoint(path, {"model": Code(), "config": {}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "last.pt"]
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    with pytest.raises(CheckpointError, match=r"model.dim: 8 in checkpoint vs 16 now"):
        check_config(path, {"seed": 0, "model": {"dim": 8}}, {"seed": 0, "model": {"dim": 16}})
    check_config(path, {"device": "cuda", "model": {}}, {"device": "cpu", "model": {}})  # runtime keys pass
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_holding_out_more_than_a_fifth_of_the_training_list_warns():
    from t2vlad_lib.data.released import SplitData
    from t2vlad_lib.engine.pipeline import holdout

    ids = [f"v{i}" for i in range(10)]
    split = SplitData(name="toy", split="train", root=Path("."), video_ids=ids, features={"e": [None] * 10},
                      captions=[["a caption"]] * 10, dims={"e": 1}, caption_index=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, val = holdout(split, 2)  # a fifth: fine
    assert (len(train.video_ids), len(val.video_ids)) == (8, 2)
    with pytest.warns(UserWarning, match=r"holds out 3 of the 10 training videos \(30%\).*more than a fifth"):
        holdout(split, 3)
