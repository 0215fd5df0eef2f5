"""MMT-style baseline encoder: shapes, masking invariance, availability, gradients, bad input."""

import pytest
import torch

from t2vlad_lib.core.batch import VideoBatch
from t2vlad_lib.model.mmt import MMTVideoEncoder

DIMS = {"appearance": 7, "motion": 5, "audio": 4}
LENGTHS = {"appearance": 4, "motion": 3, "audio": 2}


def make_video(B=5, seed=0, pad=0):
    """Row 0 has one padded appearance segment, rows 1 and 3 miss audio; ``pad`` extra padded segments."""
    g = torch.Generator().manual_seed(seed)
    feats, masks, avail = {}, {}, {}
    for e, d in DIMS.items():
        T = LENGTHS[e] + pad
        feats[e] = torch.randn(B, T, d, generator=g)
        masks[e] = torch.zeros(B, T, dtype=torch.bool)
        masks[e][:, : LENGTHS[e]] = True
        avail[e] = torch.ones(B, dtype=torch.bool)
    masks["appearance"][0, 3] = False
    for i in (1, 3):
        avail["audio"][i], masks["audio"][i] = False, False
    return VideoBatch(feats, masks, avail, [f"video{i}" for i in range(B)])


def make_encoder(**kw):
    torch.manual_seed(0)
    return MMTVideoEncoder(DIMS, dim=8, heads=2, **kw).eval()


def test_shapes_unit_norm_and_token_layout():
    enc = make_encoder()
    out = enc(make_video())
    assert out.embeddings.shape == (5, 3, 8) and out.available.shape == (5, 3)
    x, mask, agg = enc.tokens(make_video())
    assert x.shape == (5, 3 + 9, 8) and mask.shape == (5, 12)
    assert agg.tolist() == [0, 5, 9]  # [agg, 4 appearance, agg, 3 motion, agg, 2 audio]
    norms = out.embeddings.norm(dim=-1)
    assert torch.allclose(norms[out.available], torch.ones(int(out.available.sum())), atol=1e-5)
    assert len(enc.encoder.layers) == 4


def test_aggregated_token_is_max_pool_of_projected_segments():
    enc = make_encoder()
    video = make_video()
    x, _, _ = enc.tokens(video)
    feats = enc.proj["appearance"](video.features["appearance"][0, :3])  # 3 real segments of row 0
    expected = feats.max(0).values + enc.temporal_emb.weight[0] + enc.expert_emb.weight[0]
    assert torch.allclose(x[0, 0], expected, atol=1e-6)


def test_missing_expert_flagged_unavailable_and_zero():
    out = make_encoder()(make_video())
    assert out.available[:, 2].tolist() == [True, False, True, False, True]
    assert out.available[:, :2].all()
    assert torch.all(out.embeddings[~out.available] == 0)


def test_masked_tokens_change_nothing():
    enc = make_encoder()
    base = make_video()
    noisy = make_video()
    noisy.features["appearance"][0, 3] = 100.0  # a padded segment
    noisy.features["audio"][1] = -50.0  # a missing expert's features
    padded = make_video(pad=3)  # extra padding everywhere: same real values, different length
    for e in DIMS:
        padded.features[e][:, : LENGTHS[e]] = base.features[e]
    with torch.no_grad():
        ref = enc(base)
        assert torch.allclose(enc(noisy).embeddings, ref.embeddings, atol=1e-5)
        out = enc(padded)
    assert torch.equal(out.available, ref.available)
    assert torch.allclose(out.embeddings, ref.embeddings, atol=1e-5)


def test_token_permutation_within_batch_is_equivariant():
    enc = make_encoder()
    video = make_video()
    perm = torch.tensor([4, 2, 0, 1, 3])
    with torch.no_grad():
        a, b = enc(video).embeddings, enc(video.index(perm)).embeddings
    assert torch.allclose(a[perm], b, atol=1e-5)


def test_gradients_flow_to_every_parameter():
    enc = make_encoder(layers=2).train()
    out = enc(make_video(pad=1))
    out.embeddings.sum().backward()
    no_grad = [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []
    used = enc.temporal_emb.weight.grad.abs().sum(1).gt(0)  # 0: agg, 1..4: real; 5: padding only
    assert used[:5].all() and not used[5:].any()


def test_bad_input_raises():
    enc = make_encoder(max_segments=3)
    with pytest.raises(ValueError, match="appearance.*max_segments"):
        enc(make_video())
    with pytest.raises(ValueError, match="lacks experts"):
        MMTVideoEncoder(DIMS, dim=8)(VideoBatch({}, {}, {}))
