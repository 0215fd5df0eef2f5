"""The training loop: plain PyTorch, CPU or CUDA (mixed precision there), torchrun DDP, exact resume.

    from t2vlad_lib.engine.train import train
    result = train(load_config("tutorial"))          # or: python -m t2vlad_lib train --profile tutorial

Each epoch: one random caption per training video (drawn from a generator seeded by (seed, epoch),
so a resumed run replays the same data), bidirectional ranking loss on the (B, B) similarity matrix,
gradient clipping, lr x0.9 every 5 epochs. After each epoch: evaluation on the validation split, a
row in ``history.csv``/``history.json``, ``last.pt`` (atomic) and ``best.pt`` when the validation
score improved. Model selection uses the validation split only; the test split is evaluated once, with
the best checkpoint, at the end (the public code selects on the 1k-A test list).

``cfg.arch`` picks the model (T2VLAD, or a baseline of ``baselines.py``; ``runs.build_model``). Extra loss
terms come through a hook, ``extra_terms``: callables (sims, text, video) -> scalar added to the ranking
loss; by default the config's (``cfg.distill.weight > 0``: similarity distillation, ``distill.config_terms``).

A run is never overwritten silently: training into a directory that holds a run needs ``resume=True``
(continue its ``last.pt``) or ``overwrite=True``, and ``overwrite`` keeps the old run aside until the new
one has written its first ``last.pt``. ``ensure_trained`` is "train it unless it is already there" (the
ablations, notebook 10, ``train_or_load``): it leaves a finished run of the same identity (config and
data, ``runs.inspect_run``) alone, resumes an unfinished one, and refuses a run of another identity,
naming what differs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ..core.batch import TextBatch, VideoBatch
from ..core.checkpoint import (
    CheckpointError,
    atomic_write_text,
    load_checkpoint,
    rng_state,
    run_lock,
    save_checkpoint,
    set_rng_state,
)
from ..core.utils import get_device, seed_everything
from ..model.losses import make_ranking_loss
from ..model.optim import make_optimizer, make_scheduler, optimizer_step
from .config import TrainConfig
from .evaluate import evaluate
from .pipeline import Prepared, data_identity, prepare
from .runs import (
    RUN_SOURCES,
    build_model,
    check_config,
    inspect_run,
    load_run,
    load_weights,
    read_results,
    recorded_data,
)

__all__ = ["train", "register_loss_terms", "config_terms",
           "ensure_trained", "train_or_load", "TrainResult", "LossTerm",
           "RunExistsError", "build_model", "assignment_stats"]

# An extra loss term: (sims (B_t, B_v), text, video) -> scalar, added to the ranking loss.
LossTerm = Callable[[torch.Tensor, TextBatch, VideoBatch], torch.Tensor]
RUN_FILES = ("best.pt", "last.pt", "results.json", "history.csv", "history.json", "config.json")
ASIDE = ".overwritten"  # an --overwrite's old run, kept until the new run has written its first last.pt


# Extra loss terms a config section asks for, registered by the extension that provides them (``distill``
# registers "distill"): section -> builder(cfg, data, device) -> [LossTerm]. The trainer knows no extension.
LOSS_TERMS: dict[str, Callable[..., list[LossTerm]]] = {}


def register_loss_terms(section: str, builder: Callable[..., list[LossTerm]]) -> None:
    """Let ``builder(cfg, data, device)`` add the loss terms that config section ``section`` asks for."""
    LOSS_TERMS[section] = builder


def config_terms(cfg: TrainConfig, data: Prepared, device: torch.device) -> list[LossTerm]:
    """The extra loss terms ``cfg`` asks for (distillation when ``distill.weight > 0``), from the registered
    builders; a section that asks for terms no imported extension provides is an error, not a silent no-op."""
    if cfg.distill.weight > 0 and "distill" not in LOSS_TERMS:
        raise RuntimeError(
            "distill.weight > 0, but no extension registered the distillation term: "
            "import t2vlad_lib.extensions first (the CLI and the course do)"
        )
    return [term for build in LOSS_TERMS.values() for term in build(cfg, data, device)]


class RunExistsError(ValueError):
    """Training would overwrite a run: the message says how to continue, replace, or train elsewhere."""


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


def _param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    text = [p for n, p in model.named_parameters() if n.startswith("text_encoder.") and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("text_encoder.") and p.requires_grad]
    groups = [{"params": rest}]
    if text:
        groups.append({"params": text, "lr": cfg.text.lr or cfg.optim.lr})
    return groups


def train(
    cfg: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    crash_at_step: int | None = None,
    data: Prepared | None = None,
    overwrite: bool = False,
    extra_terms: Sequence[LossTerm] | None = None,
) -> TrainResult:
    """Train a config end to end and evaluate the best (validation) checkpoint on the test split.

    Args:
        cfg: a :class:`TrainConfig` (see ``load_config``).
        resume: continue from ``<run_dir>/last.pt`` (refused if it is missing or its config or data differ;
            ``epochs`` may grow, not shrink; a finished run with nothing left to train is returned as stored).
        progress: show a tqdm bar with the loss and speed.
        crash_at_step: testing aid: SIGKILL this process at that global step (to test resume).
        data: prepared data to reuse across runs (ablations); built from ``cfg`` when None.
        overwrite: replace a run already in the directory (its checkpoints, history and results). The old
            run is set aside (``.overwritten/``) and dropped once the new one has written its first
            ``last.pt``; if training fails before that, or is killed (then at the next ``train`` into the
            directory), it is put back.
        extra_terms: loss terms added to the ranking loss (default: the config's, ``distill.config_terms``).

    Raises :class:`RunExistsError` when the directory holds a run and neither ``resume`` nor ``overwrite``
    is set, and ``checkpoint.RunLockError`` when another live process trains into it.
    """
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 writes the run directory and holds its lock
        return _train(cfg, resume, progress, crash_at_step, data, extra_terms)
    run_dir = cfg.run_dir()
    with run_lock(run_dir):
        _tidy(run_dir)
        stored = _check_run_dir(cfg, resume, overwrite)
        if stored is not None:
            return stored
        replace = overwrite and not resume and any((run_dir / n).exists() for n in RUN_FILES)
        with _set_aside(run_dir) if replace else nullcontext():
            return _train(cfg, resume, progress, crash_at_step, data, extra_terms)


def _check_run_dir(cfg: TrainConfig, resume: bool, overwrite: bool) -> TrainResult | None:
    """Refuse to train into a directory that holds a run unless asked to (``resume``, ``overwrite``)."""
    run_dir = cfg.run_dir()
    if resume:
        return _check_resume(cfg)
    if overwrite:  # the new run's data and config are checked by training; the old run waits aside
        return None
    state = inspect_run(run_dir, cfg)
    if state.kind == "empty":
        return None
    results = read_results(run_dir) if state.kind == "finished" else None
    r1 = results["test"].get("t2v_R1") if results else None
    score = f" (test t2v R@1 {r1:.1f})" if r1 is not None else ""
    raise RunExistsError(
        f"{run_dir} already holds {state.describe()}{score}; use --resume to continue it, --overwrite to "
        "replace it, or --out DIR to train elsewhere"
    )


def _check_resume(cfg: TrainConfig) -> TrainResult | None:
    """Check that ``last.pt`` can be continued with ``cfg``: same config (``epochs`` may grow) and data, and
    ``epochs`` not below the epochs it has done. Returns the stored result of a finished run that has
    nothing left to train (its ``results.json``, training time included, stays as it is)."""
    run_dir = cfg.run_dir()
    last = run_dir / "last.pt"
    if not last.exists():
        raise RunExistsError(f"{last} not found: nothing to resume (train without --resume)")
    ckpt = load_checkpoint(last)
    check_config(last, ckpt["config"], cfg.to_dict(), allow=("epochs",))
    trained_on, here = recorded_data(ckpt, last), data_identity(cfg)
    if trained_on not in (None, here):
        raise CheckpointError(f"checkpoint {last} was trained on {trained_on!r} but this config's data is "
                              f"{here!r}: it cannot be continued on other data")
    done = ckpt["epoch"] + 1
    if cfg.epochs < done:
        raise RunExistsError(f"{last} has {done} epochs done; epochs={cfg.epochs} would end the run before "
                             f"them: resume with epochs >= {done} (epochs may grow on --resume, not shrink)")
    results = read_results(run_dir)
    if cfg.epochs > done or results is None:
        return None
    return TrainResult(run_dir, results.get("best_epoch", ckpt["best_epoch"]), results.get("val", {}),
                       results["test"], ckpt["history"], results.get("seconds", 0.0))


def _tidy(run_dir: Path) -> None:
    """Under the run lock, before training: delete the temporary files of writes that a kill interrupted,
    and settle an ``--overwrite`` that a kill interrupted (:func:`_settle`)."""
    for name in RUN_FILES:
        for tmp in run_dir.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
    if _settle(run_dir):
        print(f"{run_dir}: put back the run that an interrupted --overwrite had set aside")


@contextmanager
def _set_aside(run_dir: Path) -> Iterator[None]:
    """Move the run files of ``run_dir`` into ``.overwritten/`` while a new run trains there, and settle
    them (:func:`_settle`) however training ends."""
    staging = run_dir / f"{ASIDE}.tmp"
    staging.mkdir()
    for name in RUN_FILES:
        if (run_dir / name).exists():
            os.replace(run_dir / name, staging / name)
    os.replace(staging, run_dir / ASIDE)  # in one step: .overwritten/ always holds the whole old run
    try:
        yield
    finally:
        if _settle(run_dir):
            print(f"{run_dir}: training failed before its first last.pt; the previous run is back in place")


def _settle(run_dir: Path) -> bool:
    """Drop a set-aside run once the new run has its first ``last.pt``; else put it back (True)."""
    staging, aside = run_dir / f"{ASIDE}.tmp", run_dir / ASIDE
    if staging.is_dir():  # killed while setting the old run aside: nothing new has been written yet
        for f in staging.iterdir():
            os.replace(f, run_dir / f.name)
        staging.rmdir()
    if not aside.is_dir():
        return False
    if (run_dir / "last.pt").exists():
        shutil.rmtree(aside)
        return False
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for f in aside.iterdir():
        os.replace(f, run_dir / f.name)
    aside.rmdir()
    return True


def _train(
    cfg: TrainConfig,
    resume: bool,
    progress: bool,
    crash_at_step: int | None,
    data: Prepared | None,
    extra_terms: Sequence[LossTerm] | None,
):
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
    if extra_terms is None:
        extra_terms = config_terms(cfg, data, device)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    run_dir = cfg.run_dir()
    start_epoch, step, best, best_epoch, history = 0, 0, -math.inf, -1, []
    if resume:
        ckpt = load_checkpoint(run_dir / "last.pt", map_location=device)
        check_config(run_dir / "last.pt", ckpt["config"], cfg.to_dict(), allow=("epochs",))
        load_weights(model, ckpt["model"], run_dir / "last.pt", cfg)
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
        atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))
    steps_per_epoch = max(1, (data.num_train // world) // cfg.batch_size)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        bar = tqdm(
            data.epoch_batches(epoch, cfg.seed, cfg.batch_size, rank, world),
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
            for term in extra_terms:  # e.g. similarity distillation against a frozen teacher
                loss = loss + term(sims.float(), text, video)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            optimizer_step(optimizer, scaler, model, cfg.optim.grad_clip)
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
                    {"model": model.state_dict(), "config": cfg.to_dict(), "epoch": epoch, "val": val,
                     "data": data.identity()},
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
                    "data": data.identity(),
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
        load_weights(model, best_ckpt["model"], run_dir / "best.pt", cfg)
        result.val = best_ckpt.get("val", {})
        result.test = evaluate(model, data.test, cfg.eval_batch_size)
        result.seconds = time.time() - t0
        atomic_write_text(
            run_dir / "results.json",
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


@torch.no_grad()
def assignment_stats(model, data, max_items: int = 512) -> dict[str, Any]:
    """Mean assignment entropy (nats, over the K real centers renormalised) and center usage of the text
    and video tokens of up to ``max_items`` validation items (the training log): are some centers dead?
    Empty for models without a cross-modal VLAD (the baselines)."""
    if not hasattr(model, "vlad") or not hasattr(model, "video_encoder"):
        return {}
    evalset = data.val or data.test
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        tokens, tmask = model.text_tokens(evalset.texts.index(slice(0, max_items)).to(dev))
        _, ta = model.vlad.encode_text(tokens, tmask, return_assignments=True)
        enc = model.video_encoder(evalset.videos.index(slice(0, max_items)).to(dev))
        _, va = model.vlad.encode_video(enc.tokens, enc.token_mask, return_assignments=True)
    finally:
        model.train(was_training)
    out: dict[str, Any] = {}
    for side, a, m in (("text", ta, tmask), ("video", va, enc.token_mask)):
        if a is None:
            continue
        a = a[m]  # (n_tokens, K)
        p = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
        out[f"{side}_entropy"] = float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())
        out[f"{side}_usage"] = (a.sum(0) / a.sum()).tolist()
    return out


def _write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    import pandas as pd

    atomic_write_text(run_dir / "history.json", json.dumps(history, indent=1))
    flat = [{k: v for k, v in row.items() if not isinstance(v, list)} for row in history]
    atomic_write_text(run_dir / "history.csv", pd.DataFrame(flat).to_csv(index=False))


def _print_row(row: dict[str, Any], metric: str) -> None:
    val = row.get(f"val_{metric}")
    extra = f"  val {metric} {val:.1f}" if val is not None else ""
    tqdm.write(
        f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  lr {row['lr']:.2e}{extra}"
        f"  ({row['epoch_seconds']:.1f} s)"
    )


def ensure_trained(
    cfg: TrainConfig,
    data: Prepared | Callable[[], Prepared] | None = None,
    *,
    need_model: bool | Callable[[], bool] = True,
    progress: bool = True,
    before_training: Callable[[], object] | None = None,
) -> str:
    """Train ``cfg`` unless its run is already there: the one way the library makes sure a run exists
    (``train_or_load``, ``ablate``, ``beyond``; ``train`` always trains).

    What ``cfg.run_dir()`` holds for ``cfg``'s identity (``runs.inspect_run``) decides: a finished run, or a
    shipped summary (results without weights) when ``need_model`` is false, is left as it is. An empty
    directory first gets the run from a registered source if one has it (``runs.RUN_SOURCES``: the
    course's shipped runs; ``T2VLAD_RETRAIN=1`` skips them), else it is trained; an unfinished run is
    resumed; an interrupted one, or a summary when the model is needed, is trained again. A run of another
    identity, or a damaged one, is never trained over: :class:`RunExistsError` names what differs and the
    way out, unless it is an installed copy of a shipped run (nothing in it was trained here), which is
    replaced.

    Args:
        data: prepared data to train with, or a callable that prepares it (called only to train).
        need_model: whether weights are needed, or a callable asked once the directory is filled (so the
            files a shipped run brings can decide).
        before_training: called just before training (e.g. to train a distillation teacher first).
    Returns:
        "finished", or "summary" when a summary was enough.
    """
    run_dir = cfg.run_dir()
    state = inspect_run(run_dir, cfg)
    if state.kind == "other" and state.installed:
        print(f"{run_dir}: replacing a shipped run installed for another config or data ({state.diff[0]})")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        state = inspect_run(run_dir, cfg)
    if state.kind == "empty" and any(source(cfg) for source in RUN_SOURCES):
        state = inspect_run(run_dir, cfg)
    need = need_model() if callable(need_model) else need_model
    if state.kind == "finished" or (state.kind == "summary" and not need):
        return state.kind
    if state.kind in ("other", "damaged"):
        raise RunExistsError(
            f"{run_dir} holds {state.describe()}: not training over it; delete that directory, or train this "
            "config elsewhere (--out DIR, or out_dir=...)"
        )
    if state.kind == "summary":
        print(f"{run_dir}: the shipped run has no weights; training it")
    elif state.kind == "interrupted":
        print(f"{run_dir} holds {state.describe()}: training it again")
    if before_training is not None:
        before_training()
    train(cfg, resume=state.kind == "unfinished", progress=progress, data=data() if callable(data) else data,
          overwrite=state.kind in ("summary", "interrupted"))
    return "finished"


def train_or_load(cfg: TrainConfig, data: Prepared | None = None, progress: bool = True):
    """The notebooks' one-liner: :func:`ensure_trained`, then load the run (``runs.load_run``).

    Returns (model in eval mode with the best weights, prepared data, results dict).
    """
    ensure_trained(cfg, data, progress=progress)
    run = load_run(cfg.run_dir(), data=data, cfg=cfg, verbose=progress)
    return run.model, run.data, run.results
