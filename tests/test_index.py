"""Retrieval: chunked exact top-k against the full matrix, the flattened inner product, faiss."""

import pytest
import torch
import torch.nn.functional as F

from t2vlad_lib.core.batch import TextBatch, VideoBatch
from t2vlad_lib.engine.index import (
    FaissIndex,
    GalleryIndex,
    chunked_topk,
    flatten_text,
    flatten_video,
    gallery_chunk_size,
    recall_at_k,
    search_texts,
    search_videos,
)
from t2vlad_lib.model.t2vlad import T2VLAD, ModelConfig

DIMS = {"appearance": 7, "motion": 5, "audio": 4}
LENGTHS = {"appearance": 4, "motion": 3, "audio": 2}


def make_video(B, seed=0, missing=()):
    """B videos with random lengths; ``missing`` lists (row, expert) pairs without that expert."""
    g = torch.Generator().manual_seed(seed)
    feats, masks, avail = {}, {}, {}
    for e, d in DIMS.items():
        T = LENGTHS[e]
        feats[e] = torch.randn(B, T, d, generator=g)
        masks[e] = torch.arange(T).unsqueeze(0) < torch.randint(1, T + 1, (B, 1), generator=g)
        avail[e] = torch.ones(B, dtype=torch.bool)
    for row, e in missing:
        avail[e][row], masks[e][row], feats[e][row] = False, False, 0.0
    return VideoBatch(feats, masks, avail, [f"v{i}" for i in range(B)])


def make_text(B, L=7, H=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.arange(L).unsqueeze(0) < torch.randint(2, L + 1, (B, 1), generator=g)).long()
    return TextBatch(torch.zeros(B, L, dtype=torch.long), mask, torch.randn(B, L, H, generator=g))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = T2VLAD(ModelConfig(expert_dims=DIMS, text_dim=6, dim=8, num_clusters=3))
    m.train()
    with torch.no_grad():  # BN statistics so eval mode is not the identity
        m(make_text(16, seed=7), make_video(16, seed=7))
    return m.eval()


@pytest.fixture(scope="module")
def embeddings(model):
    missing = [(3, "audio"), (10, "motion"), (10, "audio"), (41, "appearance")]
    with torch.no_grad():
        return model.encode_text(make_text(23)), model.encode_video(make_video(57, missing=missing))


def test_chunk_size_from_budget():
    assert gallery_chunk_size(10, row_bytes=60, budget_bytes=2000) == 2000 // (60 + 160)
    assert gallery_chunk_size(10**6, row_bytes=60, budget_bytes=10) == 1


@pytest.mark.parametrize("chunk", [1, 5, 13, 57, 100])
def test_chunked_topk_equals_full_topk(model, embeddings, chunk):
    text, video = embeddings
    with torch.no_grad():
        full = model.similarity(text, video)
        ref_s, ref_i = full.topk(10, dim=1)
        s, i = search_videos(model, text, video, k=10, chunk_size=chunk)
        vs, vi = search_texts(model, video, text, k=4, chunk_size=chunk)
        ref_vs, ref_vi = full.T.topk(4, dim=1)
    assert torch.equal(i, ref_i) and torch.allclose(s, ref_s, atol=1e-6)
    assert torch.equal(vi, ref_vi) and torch.allclose(vs, ref_vs, atol=1e-6)


def test_chunked_topk_budget_and_k_larger_than_gallery(model, embeddings):
    text, video = embeddings
    with torch.no_grad():
        full = model.similarity(text, video)
        s, i = search_videos(model, text, video, k=100, budget_bytes=3000)  # tiny budget: many chunks
    assert i.shape == (23, 57)
    assert torch.equal(i, full.topk(57, dim=1).indices)
    with pytest.raises(ValueError, match="k >= 1"):
        chunked_topk(text, video, model.similarity, k=0)


@pytest.mark.parametrize("terms", ["local", "global"])
def test_chunked_topk_respects_the_model_terms(model, embeddings, terms):
    text, video = embeddings
    model.config.terms = terms  # a model trained with one term
    try:
        with torch.no_grad():
            full = model.similarity(text, video)
            s, i = search_videos(model, text, video, k=5, chunk_size=7)
            index = GalleryIndex(model, video)
            gs, gi = index.search(text, k=5)
    finally:
        model.config.terms = "both"
    assert torch.equal(i, full.topk(5, dim=1).indices)
    assert torch.equal(gi, i) and torch.allclose(gs, s, atol=1e-5)


def test_flattened_inner_product_equals_similarity_when_all_experts_present(model):
    with torch.no_grad():
        text, video = model.encode_text(make_text(9)), model.encode_video(make_video(12, seed=3))
        full = model.similarity(text, video)
        q, k = flatten_text(text), flatten_video(video)
    K, D, E = 3, 8, 3
    assert q.shape == (9, K * D + E * D) and k.shape == (12, K * D + E * D)
    assert torch.allclose(q @ k.T, full, atol=1e-6)
    for name, terms in [("local", (True, False)), ("global", (False, True))]:
        with torch.no_grad():
            ref = model.similarity(text, video, terms=name)
        assert torch.allclose(flatten_text(text, terms) @ flatten_video(video, terms).T, ref, atol=1e-6)


def test_flattened_inner_product_is_wrong_when_an_expert_is_missing(model):
    """Why missing experts need the exact path: the renormalisation sum_e w_e a_e depends on the pair."""
    with torch.no_grad():
        text = model.encode_text(make_text(9))
        video = model.encode_video(make_video(6, seed=3, missing=[(2, "audio")]))
        full = model.similarity(text, video)
    with pytest.raises(ValueError, match="rows \\[2\\]"):
        flatten_video(video)
    a = video.available.float()
    keys = torch.cat([video.local, (a.unsqueeze(-1) * video.global_feats).flatten(1)], 1)
    naive = flatten_text(text) @ keys.T
    ok = [0, 1, 3, 4, 5]
    assert torch.allclose(naive[:, ok], full[:, ok], atol=1e-6)
    assert (naive[:, 2] - full[:, 2]).abs().min() > 1e-4  # unnormalised global term differs for every text


def test_gallery_index_merges_exact_and_flat_paths(model, embeddings):
    text, video = embeddings
    with torch.no_grad():
        ref_s, ref_i = model.similarity(text, video).topk(10, dim=1)
        for backend in ["torch", "flat"]:
            index = GalleryIndex(model, video, backend=backend)
            assert len(index.rest_ids) == 3 and len(index.flat_ids) == 54
            s, i = index.search(text, k=10)
            assert torch.equal(i, ref_i), backend
            assert torch.allclose(s, ref_s, atol=1e-5), backend
    model.config.terms = "local"
    try:
        with pytest.raises(ValueError, match="rebuild"):
            index.search(text, k=10)
    finally:
        model.config.terms = "both"


def clustered(n, dim, centers, noise, gen):
    c = F.normalize(torch.randn(centers, dim, generator=gen), dim=1)
    x = c[torch.randint(centers, (n,), generator=gen)] + noise * torch.randn(n, dim, generator=gen)
    return F.normalize(x, dim=1)


def test_faiss_flat_equals_exact_and_approximate_recall():
    g = torch.Generator().manual_seed(0)
    keys = clustered(5000, 32, 50, 0.1, g)
    queries = clustered(200, 32, 50, 0.1, torch.Generator().manual_seed(1))
    exact_s, exact_i = chunked_topk(queries, keys, lambda a, b: a @ b.T, k=10, chunk_size=1234)
    s, i = FaissIndex(keys, "flat").search(queries, 10)
    assert torch.allclose(s, exact_s, atol=1e-5)
    assert recall_at_k(i, exact_i) == 1.0
    ivf = FaissIndex(keys, "ivf", nlist=50, nprobe=10)
    r_ivf = recall_at_k(ivf.search(queries, 10)[1], exact_i)
    r_hnsw = recall_at_k(FaissIndex(keys, "hnsw", ef_search=128).search(queries, 10)[1], exact_i)
    print(f"recall@10: IVF(nlist 50, nprobe 10) {r_ivf:.3f}, HNSW(ef 128) {r_hnsw:.3f}")
    assert r_ivf > 0.9 and r_hnsw > 0.9
    ivf.index.nprobe = 1
    assert recall_at_k(ivf.search(queries, 10)[1], exact_i) < r_ivf  # fewer lists probed, lower recall


def test_recall_at_k_by_hand_and_bad_input():
    exact = torch.tensor([[1, 2, 3], [4, 5, 6]])
    approx = torch.tensor([[3, 9, 1], [7, 8, 9]])
    assert recall_at_k(approx, exact) == pytest.approx((2 / 3 + 0) / 2)
    assert recall_at_k(approx, exact, k=1) == 0.0
    with pytest.raises(ValueError, match="ids on both sides"):
        recall_at_k(approx[:1], exact)
    with pytest.raises(ValueError, match="kind must be"):
        FaissIndex(torch.randn(4, 3), "lsh")
