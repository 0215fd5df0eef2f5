"""Benchmark 5: training throughput of a profile (steps/s, samples/s) and peak memory.

Times the trainer's own step (forward on a (B, B) batch, loss, backward, clip, optimiser step) on the
profile's real data, after a warm-up, with the data already prepared (generation and caption encoding are
one-off costs, reported separately by ``prepare``'s own output).
"""

from __future__ import annotations

import time

import torch

from t2vlad_lib.core.utils import seed_everything
from t2vlad_lib.engine.config import load_config
from t2vlad_lib.engine.pipeline import prepare
from t2vlad_lib.engine.runs import build_model
from t2vlad_lib.model.losses import make_ranking_loss
from t2vlad_lib.model.optim import make_optimizer, optimizer_step

from .common import rss_bytes


def train_throughput(profile: str = "tutorial", steps: int = 30, warmup: int = 3) -> dict:
    """Median-free simple rate: ``steps`` timed steps after ``warmup``; resident memory after them (MB)."""
    cfg = load_config(profile)
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    data = prepare(cfg, verbose=False)
    prepare_s = time.perf_counter() - t0
    model = build_model(cfg, data).train()
    opt = make_optimizer(
        [p for p in model.parameters() if p.requires_grad],
        cfg.optim.name,
        cfg.optim.lr,
        cfg.optim.weight_decay,
    )
    loss_fn = make_ranking_loss(cfg.loss.name, cfg.loss.margin)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        idx = torch.randint(data.num_train, (cfg.batch_size,), generator=gen)
        text, video = data.train_batch(idx, gen)
        loss = loss_fn(model(text, video))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        optimizer_step(opt, scaler, model, cfg.optim.grad_clip)

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - t0
    steps_per_epoch = data.num_train // cfg.batch_size
    return {
        "profile": profile,
        "batch": cfg.batch_size,
        "D": cfg.model["dim"],
        "K": cfg.model["num_clusters"],
        "params (M)": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "steps/s": round(steps / seconds, 2),
        "samples/s": round(steps * cfg.batch_size / seconds, 1),
        "epoch (s, est.)": round(steps_per_epoch * seconds / steps, 1),
        "RSS after the steps (MB)": round(rss_bytes() / 2**20, 0),
        "prepare (s, cached data)": round(prepare_s, 1),
    }


if __name__ == "__main__":
    print(train_throughput())
