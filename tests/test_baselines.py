"""Baselines (MMT-style, CE-style preset, mean pooling), the ETVA ALBERT text path, the new config keys,
and a 1-epoch trainer run of each architecture on the shipped 64-video DigitClips sample."""


import pytest
import torch
import torch.nn.functional as F
from helpers import DIMS, make_text, make_video, small_run

from t2vlad_lib.core.batch import TextBatch, VideoBatch
from t2vlad_lib.engine.config import load_config
from t2vlad_lib.engine.index import chunked_topk
from t2vlad_lib.model.alignment import pairwise_global_similarity
from t2vlad_lib.model.baselines import BaselineConfig, MeanPool, MMTStyle
from t2vlad_lib.model.losses import InfoNCELoss, make_ranking_loss
from t2vlad_lib.model.t2vlad import T2VLAD, ModelConfig


def build(cls):
    torch.manual_seed(0)
    model = cls(BaselineConfig(DIMS, text_dim=6, dim=8, heads=2, attention_layers=2))
    model.train()
    with torch.no_grad():  # BatchNorm statistics so eval mode is not the identity
        model(make_text(seed=5), make_video(seed=5))
    return model.eval()


@pytest.mark.parametrize("cls", [MMTStyle, MeanPool])
def test_shapes_and_dual_encoder_property(cls):
    model = build(cls)
    text, video = make_text(), make_video()
    t, v = model.encode_text(text), model.encode_video(video)
    sims = model(text, video)
    assert sims.shape == (6, 5)
    torch.testing.assert_close(model.similarity(t, v), sims)
    if cls is MMTStyle:
        assert t.global_feats.shape == (6, 3, 8) and t.weights.shape == (6, 3) and t.local.shape == (6, 0)
        assert v.global_feats.shape == (5, 3, 8) and v.available[:, 2].tolist() == [1, 0, 1, 0, 1]
        assert model.terms() == (False, True)
    else:
        assert t.local.shape == (6, 8) and v.local.shape == (5, 8) and v.global_feats.shape == (5, 0, 8)
        assert torch.allclose(v.local.norm(dim=-1), torch.ones(5)) and model.terms() == (True, False)
    # chunked exact search (index.py) over the baseline's embeddings equals topk of the full matrix
    s, i = chunked_topk(t, v, model.similarity, k=3, chunk_size=2)
    assert torch.equal(i, sims.topk(3, dim=1).indices)
    cat = model.cat_video(
        [model.encode_video(video.index(slice(0, 2))), model.encode_video(video.index(slice(2, 5)))]
    )
    torch.testing.assert_close(model.similarity(t, cat), sims)


def test_mmt_similarity_matches_the_per_pair_reference():
    model = build(MMTStyle)
    t, v = model.encode_text(make_text()), model.encode_video(make_video())
    sims = model.similarity(t, v)
    for i in range(6):
        for j in range(5):
            ref = pairwise_global_similarity(
                t.global_feats[i : i + 1],
                t.weights[i : i + 1],
                v.global_feats[j : j + 1],
                v.available[j : j + 1],
            )
            assert torch.allclose(sims[i, j], ref[0], atol=1e-6)


def test_meanpool_is_the_masked_mean_and_ignores_padding():
    model = build(MeanPool)
    video = make_video()
    got = model.encode_video(video).local
    for b in range(5):  # naive loop over the real tokens of the available experts
        toks = [
            model.proj[e](video.features[e][b, t])
            for e in DIMS
            for t in range(video.features[e].shape[1])
            if video.token_mask[e][b, t] and video.available[e][b]
        ]
        assert torch.allclose(got[b], F.normalize(torch.stack(toks).mean(0), dim=0), atol=1e-6)
    text = make_text()
    states = text.states.clone()
    states[~text.attention_mask.bool()] = 99.0  # garbage on [PAD]: nothing changes
    noisy = TextBatch(text.input_ids, text.attention_mask, states)
    torch.testing.assert_close(model.encode_text(noisy).local, model.encode_text(text).local)
    video.features["appearance"][0, 3] = 50.0  # the padded segment of row 0
    video.features["audio"][1] = -7.0  # a missing expert
    torch.testing.assert_close(model.encode_video(video).local, got)


def test_mmt_masked_tokens_change_nothing():
    model = build(MMTStyle)
    video = make_video()
    ref = model.encode_video(video).global_feats
    video.features["appearance"][0, 3] = 50.0
    video.features["audio"][3] = 3.0
    torch.testing.assert_close(model.encode_video(video).global_feats, ref)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="expert_dims is empty"):
        BaselineConfig({}, 6, 8)
    with pytest.raises(ValueError, match="text_proj=False"):
        BaselineConfig(DIMS, 6, 8, text_proj=False)
    model = build(MeanPool)
    text = make_text()
    text.attention_mask[2] = 0
    with pytest.raises(ValueError, match="empty text"):
        model.encode_text(text)
    with pytest.raises(ValueError, match="lacks experts"):
        model.encode_video(
            VideoBatch(
                {"motion": torch.zeros(1, 2, 5)},
                {"motion": torch.ones(1, 2, dtype=bool)},
                {"motion": torch.ones(1, dtype=bool)},
            )
        )


def test_config_arch_presets_and_new_keys():
    cfg = load_config("fast", ["arch=ce"])
    mc = cfg.model_config(DIMS, 6)
    assert mc.terms == "global" and mc.text_global_from == "cls" and mc.num_clusters == 5
    assert cfg.to_dict()["arch"] == "ce"
    plain = load_config("fast").to_dict()
    assert plain["arch"] == "t2vlad" and plain["distill"]["weight"] == 0.0
    assert plain["data"]["caption_noise"] == 0.0 and plain["loss"]["temperature"] is None
    with pytest.raises(ValueError, match="arch: unknown 'clip'"):
        load_config("fast", ["arch=clip"])
    with pytest.raises(ValueError, match="fixes model.terms"):
        load_config("fast", ["arch=ce", "model.use_local=true"])  # an old key, mapped to model.terms=both
    with pytest.raises(ValueError, match="needs weight >= 0 and"):
        load_config("fast", ["distill.weight=1.0"])
    with pytest.raises(ValueError, match="caption_noise"):
        load_config("fast", ["data.caption_noise=1.5"])
    with pytest.raises(ValueError, match="valid keys"):
        load_config("fast", ["distill.tau=1"])
    loss = make_ranking_loss("infonce", 0.2, 0.1)
    assert isinstance(loss, InfoNCELoss) and loss.temperature == 0.1
    assert make_ranking_loss("infonce").temperature == 0.05


# ETVA (2024): ALBERT as the text encoder. No ALBERT weights can be had offline here, so only a tiny random
# AlbertConfig is tested: it proves the path (config -> TextEncoder -> T2VLAD, gradients into the shared
# layers), not ALBERT-base's retrieval quality; configs/extra/etva-msrvtt.yaml has never run here.


@pytest.mark.slow  # importing transformers' ALBERT dominates
def test_tiny_albert_text_encoder_runs_t2vlad(monkeypatch):
    from transformers import AlbertConfig

    from t2vlad_lib.model.text import TextEncoder, TextModelUnavailable, load_text_model, resolve_text_model

    tokenizer = load_text_model("tiny-random-bert")[1]  # the shipped MiniLM's uncased WordPiece tokenizer
    albert = AlbertConfig(
        vocab_size=tokenizer.vocab_size,
        embedding_size=8,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    enc = TextEncoder(albert, tokenizer=tokenizer)
    assert type(enc.model).__name__ == "AlbertModel" and enc.hidden_size == 16
    text = enc.tokenize(["a red three rolls left", "two digits"], 12)
    states, mask = enc(text.input_ids, text.attention_mask)
    assert states.shape == (2, 12, 16) and bool((states[~mask] == 0).all())
    model = T2VLAD(ModelConfig(expert_dims=DIMS, text_dim=16, dim=8, num_clusters=3), text_encoder=enc).eval()
    sims = model(text, make_video())
    assert sims.shape == (2, 5) and bool(torch.isfinite(sims).all())
    sims.sum().backward()  # fine-tuning path: gradients reach ALBERT's shared layer weights
    assert enc.model.encoder.albert_layer_groups[0].albert_layers[0].ffn.weight.grad is not None
    with pytest.raises(ValueError, match="ALBERT shares one set"):
        TextEncoder(albert, tokenizer=tokenizer, finetune_top_layers=1)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        resolve_text_model("albert-base-v2")  # passes only if the weights happen to be in the HF cache
    except TextModelUnavailable as err:
        assert "albert-base-v2" in str(err)


def test_etva_profile_is_albert_t2vlad():
    from t2vlad_lib.engine.config import PROFILES_DIR, available_profiles

    cfg = load_config(PROFILES_DIR / "extra" / "etva-msrvtt.yaml")  # by path: not a listed profile (untested)
    assert cfg.profile == "etva-msrvtt" and "etva-msrvtt" not in available_profiles()
    assert cfg.text.model == "albert-base-v2" and cfg.arch == "t2vlad" and cfg.model["num_clusters"] == 9


@pytest.mark.slow
def test_one_epoch_of_each_arch_on_the_sample(tmp_path, monkeypatch):
    from t2vlad_lib.engine.pipeline import prepare
    from t2vlad_lib.engine.train import train

    monkeypatch.setenv("T2VLAD_CACHE", str(tmp_path / "cache"))
    base = small_run(epochs=1)
    data = None
    for arch, extra in [
        ("ce", {}),
        ("mmt", {"model.attention_layers": 1}),
        ("meanpool", {"loss.name": "infonce"}),
    ]:
        cfg = load_config("fast", {**base, **extra, "arch": arch, "out_dir": str(tmp_path / arch)})
        data = data or prepare(cfg, verbose=False)
        res = train(cfg, progress=False, data=data)
        assert (res.run_dir / "best.pt").exists() and 0 <= res.test["t2v_R1"] <= 100
        loss = res.history[0]["train_loss"]
        assert loss == loss and loss > 0  # finite, positive
        assert ("text_usage" in res.history[0]) == (arch == "ce")  # VLAD stats only for T2VLAD models
