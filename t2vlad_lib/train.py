"""The training loop: plain PyTorch, CPU or CUDA (mixed precision there), torchrun DDP, exact resume.

    from t2vlad_lib.train import train
    result = train(load_config("tutorial"))          # or: python -m t2vlad_lib train --profile tutorial

Each epoch: one random caption per training video (drawn from a generator seeded by (seed, epoch),
so a resumed run replays the same data), bidirectional ranking loss on the (B, B) similarity matrix,
gradient clipping, lr x0.9 every 5 epochs. After each epoch: evaluation on the validation split, a
row in ``history.csv``/``history.json``, ``last.pt`` (atomic) and ``best.pt`` when the validation
score improved. Model selection uses the validation split only; the test split is evaluated once, with
the best checkpoint, at the end (the public code selects on the 1k-A test list).

``cfg.arch`` picks the model (T2VLAD, or a baseline of ``baselines.py``); ``cfg.distill.weight > 0`` adds
the similarity-distillation term of ``distill.py`` against a frozen teacher checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from .baselines import BaselineConfig, MeanPool, MMTStyle
from .checkpoint import check_config, load_checkpoint, rng_state, run_lock, save_checkpoint, set_rng_state
from .config import TrainConfig, config_diff
from .evaluate import evaluate
from .losses import make_ranking_loss
from .model import T2VLAD
from .optim import Lookahead, make_optimizer, make_scheduler
from .pipeline import Prepared, prepare
from .utils import get_device, seed_everything

__all__ = ["train", "train_or_load", "TrainResult", "build_model", "assignment_stats"]


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    val: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _maybe_init_distributed(device: torch.device) -> bool:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def build_model(cfg: TrainConfig, data: Prepared) -> nn.Module:
    """The model of ``cfg.arch`` (T2VLAD, CE-style T2VLAD preset, MMT-style or mean pooling), with the text
    encoder inside when it is fine-tuned. Baselines read only their keys of ``cfg.model``."""
    if cfg.arch in ("t2vlad", "ce"):
        return T2VLAD(cfg.model_config(data.expert_dims, data.text_dim), text_encoder=data.text_encoder)
    cls = {"mmt": MMTStyle, "meanpool": MeanPool}[cfg.arch]
    keys = {k: v for k, v in cfg.model.items() if k in BaselineConfig.__dataclass_fields__}
    return cls(BaselineConfig(data.expert_dims, data.text_dim, **keys), text_encoder=data.text_encoder)


def _param_groups(model: T2VLAD, cfg: TrainConfig) -> list[dict]:
    text = [p for n, p in model.named_parameters() if n.startswith("text_encoder.") and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("text_encoder.") and p.requires_grad]
    groups = [{"params": rest}]
    if text:
        groups.append({"params": text, "lr": cfg.text.lr or cfg.optim.lr})
    return groups


@torch.no_grad()
def assignment_stats(model: T2VLAD, data: Prepared, max_items: int = 512) -> dict[str, Any]:
    """Mean assignment entropy (nats, over the K real centers renormalised) and center usage of the
    text and video tokens of up to ``max_items`` validation items: are some centers dead?
    Empty for models without a VLAD (the baselines)."""
    from .evaluate import _device

    if not isinstance(model, T2VLAD):
        return {}
    evalset = data.val or data.test
    dev = _device(model)
    was_training = model.training
    model.eval()
    text = evalset.texts.index(slice(0, max_items)).to(dev)
    video = evalset.videos.index(slice(0, max_items)).to(dev)
    tokens, tmask = model.text_tokens(text)
    _, ta = model.vlad.encode_text(tokens, tmask, return_assignments=True)
    enc = model.video_encoder(video)
    _, va = model.vlad.encode_video(enc.tokens, enc.token_mask, return_assignments=True)
    out: dict[str, Any] = {}
    for side, a, m in (("text", ta, tmask), ("video", va, enc.token_mask)):
        if a is None:
            continue
        a = a[m]  # (n_tokens, K)
        p = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
        out[f"{side}_entropy"] = float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())
        out[f"{side}_usage"] = (a.sum(0) / a.sum()).tolist()
    model.train(was_training)
    return out


def _optimizer_step(optimizer, scaler: torch.amp.GradScaler, model: nn.Module, clip: float | None) -> None:
    """Clip and step; with fp16 mixed precision the scaler steps the inner optimiser of Lookahead."""
    inner = optimizer.inner if isinstance(optimizer, Lookahead) else optimizer
    if scaler.is_enabled():
        scaler.unscale_(inner)
    if clip:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    if scaler.is_enabled():
        scaler.step(inner)
        scaler.update()
        if isinstance(optimizer, Lookahead):
            optimizer.sync()
    else:
        optimizer.step()


def _epoch_batches(data: Prepared, epoch: int, seed: int, batch_size: int, rank: int, world: int):
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(data.num_train, generator=gen)
    per_rank = (len(order) // world) if world > 1 else len(order)
    order = order[rank * per_rank : (rank + 1) * per_rank] if world > 1 else order
    for start in range(0, len(order) - batch_size + 1 if len(order) >= batch_size else 1, batch_size):
        idx = order[start : start + batch_size]
        yield data.train_batch(idx, gen)


def train(
    cfg: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    crash_at_step: int | None = None,
    data: Prepared | None = None,
) -> TrainResult:
    """Train a config end to end and evaluate the best (validation) checkpoint on the test split.

    Args:
        cfg: a :class:`TrainConfig` (see ``load_config``).
        resume: continue from ``<run_dir>/last.pt`` (refused if its config differs).
        progress: show a tqdm bar with the loss and speed.
        crash_at_step: testing aid: SIGKILL this process at that global step (to test resume).
        data: prepared data to reuse across runs (ablations); built from ``cfg`` when None.

    Raises RuntimeError when another live process trains into the same run directory (``run_lock``).
    """
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 writes the run directory and holds its lock
        return _train(cfg, resume, progress, crash_at_step, data)
    with run_lock(cfg.run_dir()):
        return _train(cfg, resume, progress, crash_at_step, data)


def _train(cfg: TrainConfig, resume: bool, progress: bool, crash_at_step: int | None, data: Prepared | None):
    t0 = time.time()
    device = get_device(cfg.device)
    distributed = _maybe_init_distributed(device)
    rank, world = _dist_info()
    if device.type == "cuda" and distributed:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    seed_everything(cfg.seed)
    data = data or prepare(cfg, verbose=rank == 0)
    seed_everything(cfg.seed)
    model = build_model(cfg, data).to(device)
    optimizer = make_optimizer(
        _param_groups(model, cfg), cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay
    )
    scheduler = make_scheduler(optimizer, cfg.optim.decay, cfg.optim.decay_every)
    loss_fn = make_ranking_loss(cfg.loss.name, cfg.loss.margin, cfg.loss.temperature)
    teacher = None
    if cfg.distill.weight > 0:
        from .distill import load_teacher, similarity_distillation_loss

        teacher = load_teacher(cfg.distill.teacher, data, device)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    run_dir = cfg.run_dir()
    start_epoch, step, best, best_epoch, history = 0, 0, -math.inf, -1, []
    if resume and (run_dir / "last.pt").exists():
        ckpt = load_checkpoint(run_dir / "last.pt", map_location=device)
        check_config(run_dir / "last.pt", ckpt["config"], cfg.to_dict())
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt.get("scaler", {}))
        set_rng_state(ckpt["rng"])
        start_epoch, step, best, best_epoch = (
            ckpt["epoch"] + 1,
            ckpt["step"],
            ckpt["best"],
            ckpt["best_epoch"],
        )
        history = ckpt["history"]
    net: nn.Module = model
    if distributed:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    steps_per_epoch = max(1, (data.num_train // world) // cfg.batch_size)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        bar = tqdm(
            _epoch_batches(data, epoch, cfg.seed, cfg.batch_size, rank, world),
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress or rank != 0,
            leave=False,
        )
        losses, t_epoch = [], time.time()
        for text, video in bar:
            if crash_at_step is not None and step == crash_at_step:
                os.kill(os.getpid(), signal.SIGKILL)
            text, video = text.to(device), video.to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                sims = net(text, video)
            loss = loss_fn(sims.float())
            if teacher is not None:  # similarity distillation (distill.py), the teacher frozen
                loss = loss + cfg.distill.weight * similarity_distillation_loss(
                    sims.float(), teacher(text, video), cfg.distill.temperature, teacher.temperature
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            _optimizer_step(optimizer, scaler, model, cfg.optim.grad_clip)
            losses.append(loss.item())
            step += 1
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        lr = optimizer.param_groups[0]["lr"]  # the rate this epoch trained at
        scheduler.step()
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            "lr": lr,
            "train_loss": sum(losses) / max(1, len(losses)),
            "epoch_seconds": time.time() - t_epoch,
        }
        if rank == 0 and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            val = evaluate(model, data.val or data.test, cfg.eval_batch_size) if data.val is not None else {}
            row.update({f"val_{k}": v for k, v in val.items()})
            row.update(assignment_stats(model, data))
            score = val.get(cfg.select_metric, -math.inf)
            if score > best or best_epoch < 0:
                best, best_epoch = score, epoch + 1
                save_checkpoint(
                    run_dir / "best.pt",
                    {"model": model.state_dict(), "config": cfg.to_dict(), "epoch": epoch, "val": val},
                )
        history.append(row)
        if rank == 0:
            save_checkpoint(
                run_dir / "last.pt",
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": rng_state(),
                    "config": cfg.to_dict(),
                    "epoch": epoch,
                    "step": step,
                    "best": best,
                    "best_epoch": best_epoch,
                    "history": history,
                },
            )
            _write_history(run_dir, history)
            if progress:
                _print_row(row, cfg.select_metric)
        if distributed:
            dist.barrier()
    result = TrainResult(run_dir, best_epoch, {}, {}, history)
    if rank == 0:
        best_ckpt = load_checkpoint(run_dir / "best.pt", map_location=device)
        model.load_state_dict(best_ckpt["model"])
        result.val = best_ckpt.get("val", {})
        result.test = evaluate(model, data.test, cfg.eval_batch_size)
        result.seconds = time.time() - t0
        (run_dir / "results.json").write_text(
            json.dumps(
                {
                    "best_epoch": best_epoch,
                    "val": result.val,
                    "test": result.test,
                    "seconds": result.seconds,
                    "config": cfg.to_dict(),
                },
                indent=2,
            )
        )
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return result


def _write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    import pandas as pd

    (run_dir / "history.json").write_text(json.dumps(history, indent=1))
    flat = [{k: v for k, v in row.items() if not isinstance(v, list)} for row in history]
    pd.DataFrame(flat).to_csv(run_dir / "history.csv", index=False)


def _print_row(row: dict[str, Any], metric: str) -> None:
    val = row.get(f"val_{metric}")
    extra = f"  val {metric} {val:.1f}" if val is not None else ""
    tqdm.write(
        f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  lr {row['lr']:.2e}{extra}"
        f"  ({row['epoch_seconds']:.1f} s)"
    )


def train_or_load(cfg: TrainConfig, data: Prepared | None = None, progress: bool = True):
    """The notebooks' train-or-load: reuse ``<run_dir>/best.pt`` when a finished run of this config is
    there, else train. Returns (model in eval mode with the best weights, prepared data, results dict).

    A finished run is one whose ``results.json`` holds the same config (runtime-only keys aside).
    """
    from .checkpoint import RUNTIME_KEYS

    results = cfg.run_dir() / "results.json"
    saved = json.loads(results.read_text()) if results.exists() else None
    same = saved is not None and not [
        k for k in config_diff(saved.get("config", {}), json.loads(json.dumps(cfg.to_dict())))
        if k.split(".")[0] not in RUNTIME_KEYS
    ]
    if not same:
        train(cfg, progress=progress, data=data)
        saved = json.loads(results.read_text())
    data = data or prepare(cfg, verbose=progress)
    model = build_model(cfg, data)
    model.load_state_dict(load_checkpoint(cfg.run_dir() / "best.pt")["model"])
    return model.eval(), data, saved
