"""Retrieval over a large gallery: exact chunked top-k, the flattened inner product, optional faiss.

Vocabulary: N_t texts, N_v videos, E experts, D common width, K clusters; N_q queries, N_g gallery items,
k results per query, F the flattened width (K*D + E*D with both terms in use).

T2VLAD is a dual encoder (``model.py``): the (N_t, N_v) score matrix is ``model.similarity`` over
embeddings computed once per side. Three ways to search it here:

- :func:`chunked_topk` scores the gallery in chunks sized from a byte budget with any
  ``score_fn(queries_chunk, gallery_chunk) -> (n_q, n_g)`` (e.g. ``model.similarity``, which respects
  the model's eval switches) and merges the per-chunk top-k: exactly ``torch.topk`` of the full matrix.
- :func:`flatten_text` / :func:`flatten_video`: when a video has every expert (a_e = 1 for all e),
  sum_e w_e a_e = sum_e w_e = 1 (softmax) and eq. (4) plus the local term is ONE inner product
  s = <q, k>, q = [t/2, (w_e F_e^t / 2)_e], k = [v, (F_e^v)_e] (F = K*D + E*D). When a video lacks an
  expert the denominator sum_e w_e a_e depends on the (text, video) pair, so no fixed k exists:
  :class:`GalleryIndex` puts such videos on the exact path and merges.
- :class:`FaissIndex`: faiss over the k vectors, exact (``IndexFlatIP``) or approximate (IVF, HNSW).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from ..model.t2vlad import T2VLAD, TextEmbeddings, VideoEmbeddings

__all__ = [
    "gallery_chunk_size", "chunked_topk", "search_videos", "search_texts", "all_experts_present",
    "flatten_text", "flatten_video", "FaissIndex", "GalleryIndex", "recall_at_k",
]

ScoreFn = Callable[[Any, Any], torch.Tensor]


def _len(x: Any) -> int:
    return x.shape[0] if isinstance(x, torch.Tensor) else len(x)


def _rows(x: Any, start: int, stop: int) -> Any:
    """Rows [start, stop) of a tensor or of an embeddings dataclass (every field sliced)."""
    if isinstance(x, torch.Tensor):
        return x[start:stop]
    if dataclasses.is_dataclass(x):
        return type(x)(**{f.name: getattr(x, f.name)[start:stop] for f in dataclasses.fields(x)})
    raise ValueError(f"cannot slice rows of {type(x).__name__}: expected a tensor or an embeddings dataclass")


def _row_bytes(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return x[0].numel() * x.element_size() if x.shape[0] else 0
    return sum(_row_bytes(getattr(x, f.name)) for f in dataclasses.fields(x))


def gallery_chunk_size(n_queries: int, row_bytes: int, budget_bytes: int = 256 * 2**20) -> int:
    """Gallery rows per chunk so one chunk's working memory stays under ``budget_bytes``.

    A gallery row costs its own bytes plus a column of the score matrix and the temporaries of
    ``model.similarity`` (numerator, denominator, sum: counted as 4 float32 columns of N_q).
    """
    per_row = row_bytes + 4 * 4 * max(n_queries, 1)
    return max(1, int(budget_bytes // per_row))


def chunked_topk(
    queries: Any,
    gallery: Any,
    score_fn: ScoreFn,
    k: int,
    chunk_size: int | None = None,
    budget_bytes: int = 256 * 2**20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of ``score_fn(queries, gallery)`` without building the (N_q, N_g) matrix.

    Args:
        queries: N_q queries (tensor or embeddings dataclass), passed whole to ``score_fn``.
        gallery: N_g items, sliced into row chunks.
        score_fn: (queries, gallery chunk of n_g rows) -> (N_q, n_g) scores.
        k: results per query (clipped to N_g).
        chunk_size: gallery rows per chunk; None = from ``budget_bytes`` (:func:`gallery_chunk_size`).
    Returns:
        scores (N_q, k) descending and gallery indices (N_q, k) long; equal to ``torch.topk`` of the
        full matrix (up to the order of exactly tied scores).
    """
    n_q, n_g = _len(queries), _len(gallery)
    if n_g == 0 or k < 1:
        raise ValueError(f"chunked_topk: need a non-empty gallery and k >= 1, got N_g={n_g}, k={k}")
    k = min(k, n_g)
    step = chunk_size or gallery_chunk_size(n_q, _row_bytes(gallery), budget_bytes)
    best_s: torch.Tensor | None = None
    best_i: torch.Tensor | None = None
    for start in range(0, n_g, step):
        scores = score_fn(queries, _rows(gallery, start, min(start + step, n_g)))  # (N_q, n_g)
        s, i = scores.topk(min(k, scores.shape[1]), dim=1)
        i = i + start
        if best_s is not None:  # merge: the top-k of (running top-k U chunk top-k)
            both = torch.cat([best_s, s], 1)
            s, j = both.topk(min(k, both.shape[1]), dim=1)
            i = torch.cat([best_i, i], 1).gather(1, j)
        best_s, best_i = s, i
    assert best_s is not None and best_i is not None
    return best_s, best_i


def search_videos(
    model: T2VLAD, text: TextEmbeddings, video: VideoEmbeddings, k: int = 10, **kw: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Text -> video: (N_t, k) scores and video indices with ``model.similarity`` (its current mode)."""
    return chunked_topk(text, video, model.similarity, k, **kw)


def search_texts(
    model: T2VLAD, video: VideoEmbeddings, text: TextEmbeddings, k: int = 10, **kw: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Video -> text: (N_v, k) scores and text indices, the transposed ``model.similarity``."""
    return chunked_topk(video, text, lambda v, t: model.similarity(t, v).T, k, **kw)


def all_experts_present(video: VideoEmbeddings) -> torch.Tensor:
    """(N_v,) bool: the videos whose score against any text is one inner product (a_e = 1 for all e)."""
    return video.available.bool().all(dim=1)


def flatten_text(text: TextEmbeddings, terms: tuple[bool, bool] = (True, True)) -> torch.Tensor:
    """Query vectors q with s = <q, k> (all experts present).

    Args:
        text: local (N_t, K*D), global_feats (N_t, E, D), weights (N_t, E).
        terms: (local, global) in use, e.g. ``model.terms()``; one term alone is not halved.
    Returns:
        (N_t, F): [t/2, (w_e F_e^t/2)_e] (F = K*D + E*D), [t] (local only) or [(w_e F_e^t)_e] (global only).
    """
    use_local, use_global = terms
    parts = []
    if use_local:
        parts.append(text.local)
    if use_global:
        parts.append((text.weights.unsqueeze(-1) * text.global_feats).flatten(1))
    return torch.cat(parts, 1) / len(parts)


def flatten_video(video: VideoEmbeddings, terms: tuple[bool, bool] = (True, True)) -> torch.Tensor:
    """Key vectors k matching :func:`flatten_text`: (N_v, F) = [v, (F_e^v)_e], [v] or [(F_e^v)_e].

    Raises ValueError if the global term is in use and a video lacks an expert: then
    s_global = sum_e w_e a_e cos_e / sum_e w_e a_e has a pair-dependent denominator and is not <q, k>.
    """
    use_local, use_global = terms
    if use_global and not all_experts_present(video).all():
        rows = (~all_experts_present(video)).nonzero().flatten()[:5].tolist()
        raise ValueError(f"flatten_video: videos at rows {rows}... miss an expert; their global score is "
                         "not an inner product (use GalleryIndex or chunked_topk for them)")
    parts = []
    if use_local:
        parts.append(video.local)
    if use_global:
        parts.append(video.global_feats.flatten(1))
    return torch.cat(parts, 1)


def _faiss():
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - faiss-cpu is in the [index] extra
        raise ImportError("t2vlad_lib.engine.index: faiss is not installed; `pip install faiss-cpu` "
                          "(or the project's [index] extra), or use chunked_topk") from err
    return faiss


class FaissIndex:
    """Inner-product faiss index over (N, F) key vectors.

    Args:
        vectors: (N, F) float32 keys (e.g. :func:`flatten_video`).
        kind: ``"flat"`` (exact, IndexFlatIP), ``"ivf"`` (IndexIVFFlat: k-means into ``nlist`` lists,
            search ``nprobe`` of them) or ``"hnsw"`` (IndexHNSWFlat, ``hnsw_m`` links, ``ef_search``).
        train_size, train_iters: IVF trains k-means on at most this many vectors (a random subset) for
            this many iterations (faiss's default is 25; 10 is enough for coarse lists and 2.5x faster).
    """

    def __init__(self, vectors: torch.Tensor, kind: str = "flat", nlist: int = 100, nprobe: int = 8,
                 hnsw_m: int = 32, ef_search: int = 64, train_size: int = 50_000, train_iters: int = 10,
                 seed: int = 0):
        faiss = _faiss()
        if vectors.dim() != 2:
            raise ValueError(f"FaissIndex: expected (N, F) vectors, got {tuple(vectors.shape)}")
        x = vectors.detach().to("cpu", torch.float32).contiguous().numpy()
        n, dim = x.shape
        self.kind, self.dim = kind, dim
        if kind == "flat":
            self.index = faiss.IndexFlatIP(dim)
        elif kind == "ivf":
            nlist = max(1, min(nlist, n))
            self.quantizer = faiss.IndexFlatIP(dim)  # kept alive: the IVF index holds a raw pointer
            self.index = faiss.IndexIVFFlat(self.quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.cp.niter = train_iters
            pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:train_size]
            self.index.train(x[pick.sort().values.numpy()])
            self.index.nprobe = min(nprobe, nlist)
        elif kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efSearch = ef_search
        else:
            raise ValueError(f"FaissIndex: kind must be 'flat', 'ivf' or 'hnsw', got {kind!r}")
        self.index.add(x)

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, queries: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """(N_q, F) queries -> (N_q, k) inner-product scores (descending) and (N_q, k) ids (-1: none)."""
        if queries.dim() != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"FaissIndex.search: expected (N_q, {self.dim}) queries, "
                             f"got {tuple(queries.shape)}")
        q = queries.detach().to("cpu", torch.float32).contiguous().numpy()
        scores, ids = self.index.search(q, k)
        return torch.from_numpy(scores), torch.from_numpy(ids)


class GalleryIndex:
    """Text -> video search over a fixed gallery: flattened vectors for the videos with every expert
    (torch matmul or faiss), ``model.similarity`` for the rest, results merged.

    The eval switches are read once (``model.terms()`` at build time, model in eval mode); with the local
    term alone every video is an inner product. Search with the same model state.

    Args:
        model: the T2VLAD (eval mode). video: the gallery's :class:`VideoEmbeddings`.
        backend: ``"torch"`` (exact chunked matmul) or a :class:`FaissIndex` kind (``"flat"``, ``"ivf"``,
            ``"hnsw"``); ``faiss_kw`` go to :class:`FaissIndex`.
    """

    def __init__(self, model: T2VLAD, video: VideoEmbeddings, backend: str = "torch", **faiss_kw: Any):
        self.model, self.terms = model, model.terms()
        flat = torch.ones(len(video), dtype=torch.bool) if not self.terms[1] else all_experts_present(video)
        self.flat_ids = flat.nonzero().flatten()  # (N_flat,) gallery positions
        self.rest_ids = (~flat).nonzero().flatten()
        self.keys = flatten_video(_take(video, self.flat_ids), self.terms)  # (N_flat, F)
        self.rest = _take(video, self.rest_ids)
        self.backend = backend
        self.faiss = None
        if backend != "torch" and len(self.flat_ids):
            self.faiss = FaissIndex(self.keys, backend, **faiss_kw)

    def search(self, text: TextEmbeddings, k: int = 10, **kw: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(N_t) text embeddings -> (N_t, k) scores and gallery video indices (exact unless IVF/HNSW)."""
        if self.model.terms() != self.terms:
            raise ValueError(f"GalleryIndex: model terms changed from {self.terms} to {self.model.terms()} "
                             "since the index was built (eval switches or train/eval mode); rebuild it")
        results = []
        if len(self.flat_ids):
            q = flatten_text(text, self.terms)
            if self.faiss is not None:
                s, i = self.faiss.search(q, min(k, len(self.flat_ids)))
            else:
                s, i = chunked_topk(q, self.keys, lambda a, b: a @ b.T, k, **kw)
            results.append((s, self.flat_ids[i.clamp_min(0)].masked_fill(i < 0, -1)))
        if len(self.rest_ids):
            s, i = chunked_topk(text, self.rest, self.model.similarity, k, **kw)
            results.append((s, self.rest_ids[i]))
        s = torch.cat([r[0] for r in results], 1)
        i = torch.cat([r[1] for r in results], 1)
        s, j = s.topk(min(k, s.shape[1]), dim=1)
        return s, i.gather(1, j)


def _take(video: VideoEmbeddings, ids: torch.Tensor) -> VideoEmbeddings:
    return VideoEmbeddings(video.local[ids], video.global_feats[ids], video.available[ids])


def recall_at_k(approx_ids: torch.Tensor, exact_ids: torch.Tensor, k: int | None = None) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k, for (N_q, >=k) id tensors."""
    k = k or exact_ids.shape[1]
    if approx_ids.shape[0] != exact_ids.shape[0] or min(approx_ids.shape[1], exact_ids.shape[1]) < k:
        raise ValueError(f"recall_at_k: need (N_q, >={k}) ids on both sides, got "
                         f"{tuple(approx_ids.shape)} and {tuple(exact_ids.shape)}")
    a, e = approx_ids[:, :k], exact_ids[:, :k]
    hits = (a.unsqueeze(2) == e.unsqueeze(1)).any(2).sum(1)  # (N_q,)
    return float(hits.float().mean() / k)
