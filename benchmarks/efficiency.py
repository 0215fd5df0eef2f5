"""Speed of the dual encoder: video encoding vs an MMT-style encoder, encode-once evaluation vs the
public code's chunked forward, and the similarity matrix's GFLOP/s vs one plain matmul.

Each function returns ``{"rows": [...], ...}`` (``pandas.DataFrame(result["rows"])`` for plots) and
measures its contenders interleaved in one process; ratios are of medians.
"""

from __future__ import annotations

import torch

from t2vlad_lib.engine.index import flatten_text, flatten_video
from t2vlad_lib.model.mmt import MMTVideoEncoder
from t2vlad_lib.model.t2vlad import T2VLAD, ModelConfig, TextEmbeddings, VideoEmbeddings

from .common import (
    PAPER_EXPERTS,
    TUTORIAL_EXPERTS,
    interleaved,
    median,
    random_text_batch,
    random_video_batch,
)

__all__ = ["encoder_gflop", "video_encoding", "evaluation", "similarity_speed"]


def _model(experts: dict[str, tuple[int, int]], dim: int, text_dim: int = 384, clusters: int = 9) -> T2VLAD:
    torch.manual_seed(0)
    cfg = ModelConfig(expert_dims={e: d for e, (_, d) in experts.items()}, text_dim=text_dim, dim=dim,
                      num_clusters=clusters)
    return T2VLAD(cfg).eval()


def encoder_gflop(
    experts: dict[str, tuple[int, int]], dim: int, layers: int, mmt: bool, clusters: int = 9
) -> float:
    """Analytic GFLOP per video (padded lengths, 2 FLOPs per multiply-add) of T2VLAD's video side
    (projections, ``layers`` attention layers with FFN D, VLAD over K+1 clusters, GEUs) or of the MMT-style
    encoder (projections, E extra tokens, ``layers`` layers). Per layer and token: 12 D^2 (QKV, output,
    FFN) + 4 M' D (scores and weighted sum) over the M' tokens of the sequence."""
    m = sum(t for t, _ in experts.values()) + (len(experts) if mmt else 0)
    flops = sum(2 * t * d * dim for t, d in experts.values())  # per-expert Linear(D_e -> D)
    flops += layers * m * (12 * dim**2 + 4 * m * dim)
    if not mmt:
        flops += 2 * m * dim * (clusters + 1) + 2 * m * dim * clusters  # assignment logits, residual sums
        flops += sum(2 * (d * dim + dim**2) for _, d in experts.values())  # GEU per expert
    return flops / 1e9


def video_encoding(setting: str = "tutorial", n_videos: int | None = None, batch_size: int = 100,
                   repeats: int = 5, mmt_layers: int = 4) -> dict:
    """Seconds to encode ``n_videos`` videos (experts given, excluded) with T2VLAD's video side
    (VideoEncoder + CrossModalVLAD.encode_video, the body of ``model.encode_video``) and with an MMT-style
    encoder of ``mmt_layers`` layers at the same D and tokens; eval mode, no_grad, batches of ``batch_size``.

    setting: ``"tutorial"`` (D=128, the 4 DigitClips experts, M=33, default 1,000 videos) or ``"paper"``
    (D=768, 8 experts with the released widths, M=364, default 100 videos). Input validation is off for both
    encoders.
    """
    settings = {"tutorial": (TUTORIAL_EXPERTS, 128, 1000), "paper": (PAPER_EXPERTS, 768, 100)}
    if setting not in settings:
        raise ValueError(f"video_encoding: setting must be one of {list(settings)}, got {setting!r}")
    experts, dim, default_n = settings[setting]
    n = n_videos or default_n
    model = _model(experts, dim)
    mmt = MMTVideoEncoder({e: d for e, (_, d) in experts.items()}, dim, heads=4, layers=mmt_layers).eval()
    video = random_video_batch(experts, n, seed=0)
    batches = [video.index(slice(i, i + batch_size)) for i in range(0, n, batch_size)]

    @torch.no_grad()
    def t2vlad(bs: list = batches) -> None:
        for b in bs:
            model.encode_video(b, validate=False)

    @torch.no_grad()
    def mmt_run(bs: list = batches) -> None:
        for b in bs:
            mmt(b, validate=False)

    t2vlad(batches[:1]), mmt_run(batches[:1])  # warm-up on one batch
    times = interleaved({"t2vlad": t2vlad, "mmt": mmt_run}, repeats=repeats, warmup=0)
    t, m = median(times["t2vlad"]), median(times["mmt"])
    params = sum(p.numel() for p in model.video_encoder.parameters()) + sum(
        p.numel() for p in model.vlad.parameters())
    row = {
        "setting": setting, "D": dim, "E": len(experts), "M tokens": sum(T for T, _ in experts.values()),
        "videos": n, "T2VLAD s": t, "MMT s": m, "MMT / T2VLAD": m / t,
        "T2VLAD s per 1k": t * 1000 / n, "MMT s per 1k": m * 1000 / n,
        "FLOP ratio (analytic)": encoder_gflop(experts, dim, mmt_layers, mmt=True)
        / encoder_gflop(experts, dim, 1, mmt=False),
        "T2VLAD params (M)": params / 1e6, "MMT params (M)": sum(p.numel() for p in mmt.parameters()) / 1e6,
    }
    return {"rows": [row], "times": times}


def _encode_once(model: T2VLAD, texts: list, videos: list) -> torch.Tensor:
    text = T2VLAD.cat_text([model.encode_text(t) for t in texts])
    video = T2VLAD.cat_video([model.encode_video(v) for v in videos])
    return model.similarity(text, video)


def _chunked_forward(model: T2VLAD, texts: list, videos: list, chunk: int) -> torch.Tensor:
    """The public code's evaluation: the paired forward on every (text chunk, video chunk)."""
    n_t, n_v = sum(len(t) for t in texts), sum(len(v) for v in videos)
    out = torch.empty(n_t, n_v)
    for i, t in enumerate(texts):
        for j, v in enumerate(videos):
            out[i * chunk : i * chunk + len(t), j * chunk : j * chunk + len(v)] = model(t, v)
    return out


def evaluation(sizes: tuple[int, ...] = (250, 500, 1000, 2000), chunk: int = 100, repeats: int = 3,
               max_repeat_size: int = 2000) -> dict:
    """N x N text-video evaluation at tutorial dims with cached text states (B, L=24, H=384), chunks of
    ``chunk``: encode once + ``model.similarity`` vs ``model(text_chunk, video_chunk)`` per chunk pair
    (each text and video re-encoded N/chunk times). Both give the same matrix (checked, which also warms
    up). Sizes above ``max_repeat_size`` are timed once (the chunked way grows as N^2)."""
    model = _model(TUTORIAL_EXPERTS, 128)
    rows = []
    for n in sizes:
        video = random_video_batch(TUTORIAL_EXPERTS, n, seed=n)
        text = random_text_batch(n, seed=n + 1)
        videos = [video.index(slice(i, i + chunk)) for i in range(0, n, chunk)]
        texts = [text.index(slice(i, i + chunk)) for i in range(0, n, chunk)]
        with torch.no_grad():
            a, b = _encode_once(model, texts, videos), _chunked_forward(model, texts, videos, chunk)
        if not torch.allclose(a, b, atol=1e-5):
            gap = float((a - b).abs().max())
            raise RuntimeError(f"evaluation: the two ways disagree at N={n} (max difference {gap:.2e})")
        with torch.no_grad():
            times = interleaved({"once": lambda t=texts, v=videos: _encode_once(model, t, v),
                                 "chunked": lambda t=texts, v=videos: _chunked_forward(model, t, v, chunk)},
                                repeats=repeats if n <= max_repeat_size else 1, warmup=0)
        once, chunked = median(times["once"]), median(times["chunked"])
        rows.append({"N texts = N videos": n, "encode once + matmul s": once,
                     f"forward per {chunk}x{chunk} chunk s": chunked, "speed-up": chunked / once})
    return {"rows": rows}


def _random_embeddings(n: int, dim: int, clusters: int, experts: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    norm = torch.nn.functional.normalize
    local = norm(torch.randn(n, clusters * dim, generator=g), dim=-1)
    feats = norm(torch.randn(n, experts, dim, generator=g), dim=-1)
    return local, feats, g


def similarity_speed(n: int = 2000, dims: tuple[tuple[int, int, int], ...] = ((128, 9, 4), (768, 9, 8)),
                     repeats: int = 7, threads: tuple[int | None, ...] = (None, 1)) -> dict:
    """GFLOP/s of ``model.similarity`` on (n, ...) cached embeddings (3 matmuls: local, global numerator,
    denominator, plus elementwise ops) against one ``torch.matmul`` (n, F) @ (F, n) of the same FLOPs,
    F = K*D + E*D + E, and the flattened single inner product (F = K*D + E*D, all experts present).
    ``threads``: torch thread counts to measure at (None = the default); on a loaded machine the
    memory-bound elementwise passes suffer most from multi-thread stragglers."""
    default = torch.get_num_threads()
    rows = []
    for th in threads:
        torch.set_num_threads(th or default)
        try:
            rows += _similarity_rows(n, dims, repeats)
        finally:
            torch.set_num_threads(default)
    return {"rows": rows}


def _similarity_rows(n: int, dims: tuple[tuple[int, int, int], ...], repeats: int) -> list[dict]:
    rows = []
    for dim, k, e in dims:
        experts = {f"e{i}": (1, 8) for i in range(e)}
        model = _model(experts, dim, text_dim=8, clusters=k)
        t_local, t_feats, g = _random_embeddings(n, dim, k, e, seed=1)
        text = TextEmbeddings(t_local, t_feats, torch.softmax(torch.randn(n, e, generator=g), -1))
        v_local, v_feats, _ = _random_embeddings(n, dim, k, e, seed=2)
        video = VideoEmbeddings(v_local, v_feats, torch.ones(n, e, dtype=torch.bool))
        width = k * dim + e * dim + e
        a, b = torch.randn(n, width), torch.randn(width, n)
        q, key = flatten_text(text), flatten_video(video)
        with torch.no_grad():
            if not torch.allclose(q @ key.T, model.similarity(text, video), atol=1e-5):
                raise RuntimeError("similarity_speed: flattened inner product != model.similarity")
            times = interleaved({"similarity": lambda m=model, t=text, v=video: m.similarity(t, v),
                                 "matmul": lambda a=a, b=b: a @ b, "flattened": lambda q=q, k=key: q @ k.T},
                                repeats=repeats)
        flops = 2.0 * n * n * width
        sim, mm, flat = (median(times[x]) for x in ("similarity", "matmul", "flattened"))
        rows.append({"threads": torch.get_num_threads(), "D": dim, "K": k, "E": e, "N x N": f"{n}x{n}",
                     "GFLOP": flops / 1e9,
                     "similarity s": sim, "matmul s": mm, "flattened s": flat,
                     "similarity GFLOP/s": flops / sim / 1e9, "matmul GFLOP/s": flops / mm / 1e9,
                     "similarity / matmul": mm / sim,
                     "flattened / matmul": mm / flat})
    return rows
