"""Fine-tuning the text encoder inside the model: each model owns its encoder, so runs that share prepared
data start from the pretrained weights and leave each other alone.

Runs use the 64-video DigitClips sample and the tiny random BERT, fine-tuned (seconds each).
"""

import pytest
import torch
from helpers import small_run

from t2vlad_lib import ablate
from t2vlad_lib.config import load_config
from t2vlad_lib.pipeline import prepare
from t2vlad_lib.runs import build_model, load_run
from t2vlad_lib.train import train, train_or_load

TUNED = {"text.freeze": False, "text.cache_states": False, "text.lr": 1e-4}


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
    from t2vlad_lib import train as train_module

    def boom(*a, **k):
        raise AssertionError("a test-time variant must reuse its base's run")

    monkeypatch.setattr(train_module, "train", boom)
    test_time = {"model.eval_use_global": False}
    no_global = ablate.run_variant("tutorial", test_time, 0, tmp_path, extra, data=data)
    again = ablate.run_variant("tutorial", {}, 0, tmp_path, extra, data=data)
    assert again == base and set(no_global) == set(base)
    assert _same(_weights(data.text_encoder), pretrained)  # neither training nor loading wrote into data
