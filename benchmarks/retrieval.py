"""Retrieval over a large synthetic gallery of flattened T2VLAD video vectors (all experts present).

Vectors have the flattened width F = K*D + E*D (default D=64, K=9, E=4: F=832, 1,000,000 videos =
3.3 GB of float32). They are not i.i.d. Gaussian (no index structure, IVF recall meaningless) nor
separated clusters (IVF trivially exact): x = normalize(z A + noise), z ~ N(0, I_r) with r = 32 latent
factors of decaying scale (1 .. 0.2), A orthonormal rows in R^F, isotropic noise of norm ``noise`` relative
to the signal. Queries are drawn from the same model (captions are not copies of gallery items).
"""

from __future__ import annotations

import gc
import math
import time

import torch

from t2vlad_lib.engine.index import FaissIndex, chunked_topk, recall_at_k

from .common import interleaved, median, rss_bytes

__all__ = ["synthetic_gallery", "retrieval"]


class LowRankModel:
    """x = normalize(z A / sqrt(F) + noise * eps / sqrt(F)), z (n, r), A (r, F): the synthetic embeddings."""

    def __init__(self, width: int, rank: int = 32, noise: float = 0.5, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        basis = torch.linalg.qr(torch.randn(width, rank, generator=g))[0].T  # (r, F) orthonormal rows
        self.mix = basis * torch.linspace(1.0, 0.2, rank).unsqueeze(1) * math.sqrt(width / rank)
        self.width, self.rank, self.noise = width, rank, noise

    def sample(self, n: int, g: torch.Generator, out: torch.Tensor | None = None) -> torch.Tensor:
        """(n, F) unit-norm vectors (written into ``out`` when given)."""
        x = out if out is not None else torch.empty(n, self.width)
        x.normal_(generator=g).mul_(self.noise)
        x.addmm_(torch.randn(n, self.rank, generator=g), self.mix)
        return x.div_(x.norm(dim=1, keepdim=True))


def synthetic_gallery(
    n: int, width: int, seed: int = 0, block: int = 100_000
) -> tuple[torch.Tensor, LowRankModel]:
    """(n, F) unit-norm keys, generated in blocks of ``block`` rows to bound memory, and their model."""
    model = LowRankModel(width, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.empty(n, width)
    for start in range(0, n, block):
        model.sample(min(block, n - start), g, out=x[start : start + block])
    return x, model


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a @ b.T


def retrieval(sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000), dim: int = 64, clusters: int = 9,
              experts: int = 4, n_queries: int = 100, k: int = 10, nprobes: tuple[int, ...] = (4, 16, 64),
              max_nlist: int = 512, budget_bytes: int = 256 * 2**20, repeats: int = 3) -> dict:
    """Query latency, build time, memory and recall@k for exact chunked top-k (torch), faiss IndexFlatIP
    and faiss IVF-Flat (nlist = sqrt(N) capped at ``max_nlist``, k-means on 40 * nlist vectors,
    10 iterations) over the first N rows of one gallery.

    Returns ``{"rows": [...], "width": F, ...}``, one row per (N, method[, nprobe]) with seconds per batch of
    ``n_queries`` queries, ms per query for a single query, and the stored bytes of the index.
    """
    width = clusters * dim + experts * dim
    t0 = time.perf_counter()
    keys, model = synthetic_gallery(max(sizes), width)
    gen_s = time.perf_counter() - t0
    queries = model.sample(n_queries, torch.Generator().manual_seed(12345))
    one = queries[:1]
    rows = []
    for n in sizes:
        gallery = keys[:n]
        exact_s, exact_i = chunked_topk(queries, gallery, _matmul, k, budget_bytes=budget_bytes)
        times = interleaved({
            "batch": lambda g=gallery: chunked_topk(queries, g, _matmul, k, budget_bytes=budget_bytes),
            "single": lambda g=gallery: chunked_topk(one, g, _matmul, k, budget_bytes=budget_bytes),
        }, repeats=repeats)
        rows.append({"N": n, "method": "torch exact chunked", "nprobe": "", "build s": 0.0,
                     "batch s": median(times["batch"]), "ms per single query": 1e3 * median(times["single"]),
                     "index MB": n * width * 4 / 2**20, "RSS growth MB": "", "recall@10": 1.0})
        for kind in ("flat", "ivf"):
            rss0 = rss_bytes()
            t0 = time.perf_counter()
            nlist = max(16, min(max_nlist, int(math.sqrt(n))))
            index = FaissIndex(gallery, kind, nlist=nlist, train_size=40 * nlist)
            build = time.perf_counter() - t0
            grown = (rss_bytes() - rss0) / 2**20
            stored = n * width * 4 + (n * 8 + nlist * width * 4) * (kind == "ivf")  # + ids, centroids
            for nprobe in (nprobes if kind == "ivf" else (None,)):
                if nprobe is not None:
                    index.index.nprobe = min(nprobe, nlist)
                times = interleaved({"batch": lambda ix=index: ix.search(queries, k),
                                     "single": lambda ix=index: ix.search(one, k)}, repeats=repeats)
                approx = index.search(queries, k)[1]
                label = "faiss IndexFlatIP" if kind == "flat" else f"faiss IVF-Flat (nlist {nlist})"
                rows.append({"N": n, "method": label, "nprobe": "" if nprobe is None else nprobe,
                             "build s": build, "batch s": median(times["batch"]),
                             "ms per single query": 1e3 * median(times["single"]),
                             "index MB": stored / 2**20,
                             "RSS growth MB": grown, "recall@10": recall_at_k(approx, exact_i, k)})
            index = None  # free faiss's copy of the vectors before the next index
            gc.collect()
    return {"rows": rows, "width": width, "D": dim, "K": clusters, "E": experts, "queries": n_queries,
            "generate s": gen_s, "gallery GB": keys.numel() * 4 / 2**30}
