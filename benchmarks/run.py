"""Run the benchmarks and rewrite their sections of ``benchmarks/RESULTS.md``.

    python -m benchmarks.run                   # everything, ~10 min on 2 cores
    python -m benchmarks.run --quick           # smaller sizes, ~1 min
    python -m benchmarks.run --only retrieval  # or video_encoding, evaluation, similarity, training

Ratios are of medians of contenders run interleaved in one process; absolute times depend on the load.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from . import efficiency, retrieval
from .common import RESULTS, machine_info, markdown_table, write_section
from .train_throughput import train_throughput


def _stamp(quick: bool, seconds: float) -> str:
    return (
        f"_Run {time.strftime('%Y-%m-%d %H:%M')}{' with --quick' if quick else ''}, {seconds:.0f} s, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores at the end._"
    )


def video_encoding(quick: bool) -> tuple[dict, str]:
    rows = efficiency.video_encoding("tutorial", 1000, batch_size=100, repeats=3 if quick else 5)["rows"]
    rows += efficiency.video_encoding(
        "paper", 20 if quick else 100, batch_size=20 if quick else 25, repeats=2 if quick else 3
    )["rows"]
    text = (
        "### 1. Video encoding: T2VLAD video side vs MMT-style encoder (experts excluded)\n\n"
        "T2VLAD: `VideoEncoder` (1 attention layer) + `CrossModalVLAD.encode_video` (the body of "
        "`model.encode_video`, validation off); MMT: `MMTVideoEncoder`, 4 layers, 4 heads, FFN D, the same "
        "tokens plus E aggregated tokens. Eval mode, no_grad, random features, interleaved repeats, medians. "
        "The paper: 0.4 s vs 1.1 s per 1,000 videos on a V100 (2.75x).\n\n"
        + markdown_table(rows)
        + "\n\n"
        + "\n".join(
            f"- {r['setting']} (D={r['D']}, M={r['M tokens']}): MMT / T2VLAD = {r['MMT / T2VLAD']:.2f}x"
            for r in rows
        )
    )
    return {"rows": rows}, text


def evaluation(quick: bool) -> tuple[dict, str]:
    sizes = (250, 500) if quick else (250, 500, 1000, 2000)
    rows = efficiency.evaluation(sizes, repeats=3)["rows"]
    text = (
        "### 2. Evaluation N x N: encode once + matmul vs the public code's chunked forward\n\n"
        "Tutorial dims (D=128, K=9, the 4 DigitClips experts, M=33), cached random text states (B, L=24, "
        "H=384), no text encoder (the port re-runs BERT on every chunk, which would widen the gap). Chunked: "
        "`model(text_chunk, video_chunk)` on every 100 x 100 block, so each text and video is encoded N/100 "
        "times. Same matrix checked (atol 1e-5). Medians of 3 interleaved repeats.\n\n" + markdown_table(rows)
    )
    return {"rows": rows}, text


def similarity(quick: bool) -> tuple[dict, str]:
    rows = efficiency.similarity_speed(1000 if quick else 2000, repeats=3 if quick else 7)["rows"]
    text = (
        "### 3. Similarity-matrix build speed vs one plain matmul of the same FLOPs\n\n"
        "`model.similarity` on cached embeddings (local matmul (N, K*D) x (K*D, N), global numerator "
        "(N, E*D) x (E*D, N), denominator (N, E) x (E, N), then an elementwise divide, sum and halving) "
        "against `torch.matmul` of (N, F) x (F, N), F = K*D + E*D + E; 'flattened' is the one inner product "
        "of width K*D + E*D (all experts present). The local term is added to the global one by one "
        "`addmm`. Ratio = matmul time / similarity time = GFLOP/s ratio. Measured with torch's "
        "default threads and with 1 thread.\n\n" + markdown_table(rows) + "\n\n"
        "Where the ratio is below 0.8 the cause is the work that is not matmul: the (N, E) x (E, N) "
        "denominator, the clamp and the divide are memory-bound passes over (N, N) float32 arrays, against "
        "2*F FLOPs per element in the GEMMs; at small F = K*D + E*D (tutorial dims) they weigh most. With 2 "
        "threads on a loaded 2-core machine each small parallel pass also waits for a descheduled thread, "
        "which is why the 1-thread ratio is higher. The flattened inner product reaches the matmul rate."
    )
    return {"rows": rows}, text


def retrieval_bench(quick: bool) -> tuple[dict, str]:
    sizes = (1_000, 10_000, 50_000) if quick else (1_000, 10_000, 100_000, 1_000_000)
    res = retrieval.retrieval(sizes, repeats=2 if quick else 3)
    text = (
        f"### 4. Retrieval over up to {max(sizes):,} synthetic video vectors\n\n"
        f"Flattened width F = K*D + E*D = {res['width']} (D={res['D']}, K={res['K']}, E={res['E']}: D=64 "
        f"instead of 128 to halve memory); the largest gallery is {res['gallery GB']:.2f} GB of float32, "
        f"generated in {res['generate s']:.1f} s (low-rank model, see `benchmarks/retrieval.py`). "
        f"{res['queries']} text queries, top-10. 'batch s' = all queries in one call, "
        "'ms per single query' = one query alone. Torch exact = `chunked_topk` with a 256 MB budget; "
        "'index MB' = stored vectors "
        "(+ ids and centroids for IVF); 'RSS growth MB' = process memory added by building the faiss index "
        "(its own copy of the vectors). Recall@10 against the exact top-10.\n\n" + markdown_table(res["rows"])
    )
    return res, text


def training(quick: bool) -> tuple[dict, str]:
    row = train_throughput("tutorial", steps=10 if quick else 40)
    text = (
        "### 5. Training throughput of the `tutorial` profile\n\n"
        "The trainer's step (batch assembly from the cached data, forward on the (B, B) matrix, loss, "
        "backward, clipping, Ranger step) on DigitClips with cached MiniLM token states, after a warm-up. "
        "RSS is the process's resident memory after the timed steps (data, cached token states, model, "
        "optimiser); memory that earlier benchmarks of the same run freed may still be held by the "
        "allocator, so `python -m benchmarks.run --only training` gives the clean figure.\n\n"
        + markdown_table([row])
    )
    return row, text


BENCHMARKS: dict[str, Callable[[bool], tuple[dict, str]]] = {
    "video_encoding": video_encoding,
    "evaluation": evaluation,
    "similarity": similarity,
    "retrieval": retrieval_bench,
    "training": training,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", choices=list(BENCHMARKS), action="append", help="run only this (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about a minute")
    args = parser.parse_args(argv)
    info = machine_info()
    write_section(
        "machine",
        "## Machine (last run)\n\n" + markdown_table([info]) + "\n\n"
        "Shared machine: other jobs ran during the measurements, so absolute times are noisy; "
        "compare the ratios, which are measured side by side in one run.",
    )
    for name in args.only or list(BENCHMARKS):
        t0 = time.perf_counter()
        print(f"[benchmarks] {name} ...", flush=True)
        _, text = BENCHMARKS[name](args.quick)
        seconds = time.perf_counter() - t0
        write_section(name, text + "\n\n" + _stamp(args.quick, seconds))
        print(text + f"\n[benchmarks] {name}: {seconds:.0f} s\n", flush=True)
    print(f"[benchmarks] wrote {RESULTS}")


if __name__ == "__main__":
    main()
