"""Video encoder, global alignment and the full model: references, dual-encoder property, bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import DIMS, make_text, make_video

from t2vlad_lib.model.alignment import global_similarity, pairwise_global_similarity
from t2vlad_lib.model.t2vlad import T2VLAD, ModelConfig
from t2vlad_lib.model.video import GatedEmbeddingUnit, VideoEncoder


def make_model(**kw):
    torch.manual_seed(0)
    cfg = ModelConfig(expert_dims=DIMS, text_dim=6, dim=8, num_clusters=3, **kw)
    model = T2VLAD(cfg)
    # one training step's worth of BN statistics so eval mode is not the identity
    model.train()
    with torch.no_grad():
        model(make_text(seed=5), make_video(seed=5))
    return model.eval()


def test_geu_unit_norm_and_formula():
    torch.manual_seed(0)
    geu = GatedEmbeddingUnit(5, 4).eval()
    x = torch.randn(3, 5)
    y = geu.fc(x)
    bn = geu.bn
    gate = torch.sigmoid(
        (geu.gate(y) - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    )
    assert torch.allclose(geu(x), F.normalize(y * gate, dim=-1), atol=1e-6)
    assert torch.allclose(geu(x).norm(dim=-1), torch.ones(3))


def test_video_encoder_shapes_masks_and_availability():
    torch.manual_seed(0)
    enc = VideoEncoder(DIMS, dim=8).eval()
    out = enc(make_video())
    assert out.tokens.shape == (5, 9, 8) and out.token_mask.shape == (5, 9)
    assert out.global_feats.shape == (5, 3, 8) and out.available.shape == (5, 3)
    assert out.expert_of_token.tolist() == [0] * 4 + [1] * 3 + [2] * 2
    assert out.available[:, 2].tolist() == [True, False, True, False, True]
    assert not out.token_mask[1, 7:].any() and not out.token_mask[0, 3]
    assert torch.all(out.tokens[~out.token_mask] == 0)


def test_video_masked_tokens_change_nothing():
    enc = VideoEncoder(DIMS, dim=8).eval()
    v = make_video()
    ref = enc(v)
    w = make_video()
    w.features["appearance"][0, 3:] = 100.0
    w.features["audio"][1] = float("nan")  # a missing expert may hold NaN (released pickles)
    out = enc(w)
    m = ref.token_mask
    assert torch.allclose(ref.tokens[m], out.tokens[m], atol=1e-5)
    assert torch.allclose(ref.global_feats[ref.available], out.global_feats[ref.available], atol=1e-6)


def test_global_similarity_matches_pair_loop():
    g = torch.Generator().manual_seed(0)
    Nt, Nv, E, D = 4, 5, 3, 6
    ft = F.normalize(torch.randn(Nt, E, D, generator=g), dim=-1)
    fv = F.normalize(torch.randn(Nv, E, D, generator=g), dim=-1)
    w = torch.softmax(torch.randn(Nt, E, generator=g), -1)
    a = torch.rand(Nv, E, generator=g) > 0.3
    a[:, 0] = True
    sims = global_similarity(ft, w, fv, a)
    for i in range(Nt):
        for j in range(Nv):
            num = sum(float(w[i, e]) * float(ft[i, e] @ fv[j, e]) for e in range(E) if a[j, e])
            den = sum(float(w[i, e]) for e in range(E) if a[j, e])
            assert math.isclose(float(sims[i, j]), num / den, abs_tol=1e-6)
            pair = pairwise_global_similarity(ft[i : i + 1], w[i : i + 1], fv[j : j + 1], a[j : j + 1])
            assert math.isclose(float(pair), num / den, abs_tol=1e-6)


def naive_pair_score(model, text, video, i, j):
    """The port's way: run the model on one (caption, video) pair and compute every term by hand."""
    t = model.encode_text(text.index([i]))
    v = model.encode_video(video.index([j]))
    K, D = model.config.num_clusters, model.config.dim
    tk, vk = t.local.view(K, D), v.local.view(K, D)
    s_local = sum(float(F.cosine_similarity(tk[k], vk[k], dim=0)) for k in range(K)) / K
    w, a = t.weights[0], v.available[0]
    cos = [float(t.global_feats[0, e] @ v.global_feats[0, e]) for e in range(len(DIMS))]
    s_global = sum(float(w[e]) * cos[e] for e in range(len(DIMS)) if a[e]) / sum(
        float(w[e]) for e in range(len(DIMS)) if a[e]
    )
    return s_local, s_global


@pytest.mark.parametrize("kind", ["shared", "separate", "text_only"])
def test_similarity_over_cached_embeddings_equals_paired_forward(kind):
    model = make_model(vlad={"kind": kind})
    text, video = make_text(), make_video()
    with torch.no_grad():
        full = model(text, video)
        # encode once per side, in chunks, then similarity: the dual-encoder path
        t = T2VLAD.cat_text(
            [model.encode_text(text.index(slice(0, 2))), model.encode_text(text.index(slice(2, 6)))]
        )
        v = T2VLAD.cat_video([model.encode_video(video.index([k])) for k in range(5)])
        cached = model.similarity(t, v)
        assert full.shape == (6, 5)
        assert torch.allclose(full, cached, atol=1e-5)
        for i, j in [(0, 0), (2, 1), (5, 3), (4, 4)]:
            s_local, s_global = naive_pair_score(model, text, video, i, j)
            assert math.isclose(float(full[i, j]), (s_local + s_global) / 2, abs_tol=1e-5)


def test_terms_pick_the_similarity_at_training_and_test_time():
    text, video = make_text(), make_video()
    full = make_model()
    with torch.no_grad():
        t, v = full.encode_text(text), full.encode_video(video)
        s_local = t.local @ v.local.T
        s_global = global_similarity(t.global_feats, t.weights, v.global_feats, v.available)
        assert torch.allclose(full.similarity(t, v), (s_local + s_global) / 2, atol=1e-6)
        assert torch.equal(full.similarity(t, v, terms="both"), full.similarity(t, v))
        assert torch.allclose(full.similarity(t, v, terms="local"), s_local, atol=1e-6)
        assert torch.allclose(full.similarity(t, v, terms="global"), s_global, atol=1e-6)
    assert full.terms() == (True, True)
    global_only = make_model(terms="global")
    assert global_only.terms() == (False, True) and global_only.train().terms() == (False, True)
    with pytest.raises(ValueError, match="terms 'none'"):
        T2VLAD(ModelConfig(expert_dims=DIMS, terms="none"))


def test_missing_expert_weight_is_renormalised():
    """A video with audio missing is scored on the other experts only, with weights summing to 1."""
    model = make_model()
    text, video = make_text(), make_video(missing_audio=(1,))
    with torch.no_grad():
        t, v = model.encode_text(text), model.encode_video(video)
        w = t.weights[:, :2] / t.weights[:, :2].sum(-1, keepdim=True)
        cos = torch.einsum("ted,ed->te", t.global_feats[:, :2], v.global_feats[1, :2])
        assert torch.allclose(model.similarity(t, v, terms="global")[:, 1], (w * cos).sum(-1), atol=1e-6)


def test_gradients_reach_every_trainable_part():
    model = make_model().train()
    loss = model(make_text(), make_video()).diagonal().sum()
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, no_grad


def test_bad_input_raises_clear_errors():
    model = make_model()
    video = make_video()
    video.features["motion"][2, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="motion.*video2"):
        model.encode_video(video)
    video = make_video()
    video.features["audio"] = torch.randn(5, 2, 9)
    with pytest.raises(ValueError, match=r"audio.*\(B, T, 4\)"):
        model.encode_video(video)
    video = make_video()
    for e in DIMS:
        video.token_mask[e][4] = False
    with pytest.raises(ValueError, match="video4 has no token"):
        model.encode_video(video)
    text = make_text()
    text.attention_mask[3] = 0
    with pytest.raises(ValueError, match="empty text.*caption 3"):
        model.encode_text(text)
    text = make_text()
    text.states = None
    with pytest.raises(ValueError, match="no cached states"):
        model.encode_text(text)
    with pytest.raises(ValueError, match="expert_dims is empty"):
        T2VLAD(ModelConfig())


def test_text_global_from_cls_uses_the_first_token_only():
    model = make_model(text_global_from="cls", terms="global")
    text = make_text()
    with torch.no_grad():
        base = model.encode_text(text)
        text.states[:, 1:] += torch.randn_like(text.states[:, 1:])  # everything but [CLS] changes
        moved = model.encode_text(text)
    assert torch.allclose(base.global_feats, moved.global_feats) and torch.allclose(
        base.weights, moved.weights
    )
    assert not torch.allclose(base.local, moved.local)
    with pytest.raises(ValueError, match="text_global_from"):
        T2VLAD(ModelConfig(expert_dims=DIMS, text_global_from="mean"))


def test_video_encoder_without_token_norm_or_self_attention():
    torch.manual_seed(0)
    v = make_video()
    plain = VideoEncoder(DIMS, dim=8, layers=0).eval()
    tokens, mask, _ = plain.local_tokens(v)
    out = plain(v)
    assert plain.attention is None and torch.equal(out.tokens, tokens)  # no mixing across tokens
    assert torch.allclose(tokens[mask].norm(dim=-1), torch.ones(int(mask.sum())))
    raw = VideoEncoder(DIMS, dim=8, layers=0, token_norm=False).eval()
    raw.load_state_dict(plain.state_dict())
    raw_tokens = raw(v).tokens
    assert not torch.allclose(raw_tokens[mask].norm(dim=-1), torch.ones(int(mask.sum())))
    assert torch.allclose(F.normalize(raw_tokens[mask], dim=-1), tokens[mask], atol=1e-6)
