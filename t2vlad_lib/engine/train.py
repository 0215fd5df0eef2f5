"""The training loop: plain PyTorch, CPU or CUDA (mixed precision there), torchrun DDP, exact resume.

    from t2vlad_lib.engine.train import train
    result = train(load_config("tutorial"))          # or: python -m t2vlad_lib train --profile tutorial

Each epoch (the generic loop ``loop.fit``): one random caption per training video (drawn from a generator
seeded by (seed, epoch), so a resumed run replays the same data), bidirectional ranking loss on the (B, B)
similarity matrix, gradient clipping, lr x0.9 every 5 epochs. After each epoch, as callbacks: evaluation on
the validation split and ``best.pt`` when the validation score improved (``_Selection``), ``last.pt``
(atomic, ``_LastCheckpoint``), a row in ``history.csv``/``history.json`` and the printed line (``_Log``).
Model selection uses the validation split only; the test split is evaluated once, with the best
checkpoint, at the end (the public code selects on the 1k-A test list); ``results.json`` keeps its metrics
and the rank of every test query (``query_ranks``).

``cfg.arch`` picks the model (T2VLAD, or a baseline of ``baselines.py``; ``runs.build_model``). Extra loss
terms come through a hook, ``extra_terms``: callables (sims, text, video) -> scalar added to the ranking
loss; by default those the config asks for, built by the extensions that registered them
(``register_loss_terms``; e.g. similarity distillation when ``distill.weight > 0``).

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
from ..core.metrics import t2v_ranks, v2t_ranks
from ..core.utils import eval_mode, get_device, seed_everything
from ..model.losses import make_ranking_loss
from ..model.optim import make_optimizer, make_scheduler
from .config import TrainConfig
from .evaluate import evaluate
from .loop import Callback, FitState, fit
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

__all__ = ["train", "optimizer_and_loss", "register_loss_terms", "config_terms",
           "ensure_trained", "train_or_load", "TrainResult", "LossTerm",
           "RunExistsError", "build_model", "assignment_stats", "query_ranks"]

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
    """The extra loss terms ``cfg`` asks for, from the registered builders. A config section with a positive
    ``weight`` (``distill.weight``) asks for terms: one that no imported extension provides is an error, not
    a silent no-op."""
    asking = [name for name, section in vars(cfg).items() if getattr(section, "weight", 0) > 0]
    missing = [name for name in asking if name not in LOSS_TERMS]
    if missing:
        raise RuntimeError(
            f"{missing[0]}.weight > 0, but no extension registered its loss term: "
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


def optimizer_and_loss(
    model: nn.Module, cfg: TrainConfig, extra_groups: Sequence[dict] = ()
) -> tuple[torch.optim.Optimizer, Callable]:
    """What :func:`train` optimises with: the config's optimiser over the model's trainable parameters (a
    fine-tuned text encoder at ``text.lr``) and its ranking loss, sims (B, B) -> scalar. extra_groups: more
    parameter groups trained alongside (e.g. a matching head trained jointly: ``matching.train_matching``)."""
    groups = _param_groups(model, cfg) + list(extra_groups)
    optimizer = make_optimizer(groups, cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay)
    return optimizer, make_ranking_loss(cfg.loss.name, cfg.loss.margin, cfg.loss.temperature)


def train(
    cfg: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    data: Prepared | None = None,
    overwrite: bool = False,
    extra_terms: Sequence[LossTerm] | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train a config end to end and evaluate the best (validation) checkpoint on the test split.

    Args:
        cfg: a :class:`TrainConfig` (see ``load_config``).
        resume: continue from ``<run_dir>/last.pt`` (refused if it is missing or its config or data differ;
            ``epochs`` may grow, not shrink; a finished run with nothing left to train is returned as stored).
        progress: show a tqdm bar with the loss and speed.
        data: prepared data to reuse across runs (ablations); built from ``cfg`` when None.
        overwrite: replace a run already in the directory (its checkpoints, history and results). The old
            run is set aside (``.overwritten/``) and dropped once the new one has written its first
            ``last.pt``; if training fails before that, or is killed (then at the next ``train`` into the
            directory), it is put back.
        extra_terms: loss terms added to the ranking loss (default: the config's, :func:`config_terms`).
        callbacks: more ``loop.Callback`` hooks, called after the trainer's own (a test kills a run with one).

    Raises :class:`RunExistsError` when the directory holds a run and neither ``resume`` nor ``overwrite``
    is set, and ``checkpoint.RunLockError`` when another live process trains into it.
    """
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 writes the run directory and holds its lock
        return _train(cfg, resume, progress, data, extra_terms, callbacks)
    run_dir = cfg.run_dir()
    with run_lock(run_dir):
        _tidy(run_dir)
        stored = _check_run_dir(cfg, resume, overwrite)
        if stored is not None:
            return stored
        replace = overwrite and not resume and any((run_dir / n).exists() for n in RUN_FILES)
        with _set_aside(run_dir) if replace else nullcontext():
            return _train(cfg, resume, progress, data, extra_terms, callbacks)


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
    data: Prepared | None,
    extra_terms: Sequence[LossTerm] | None,
    callbacks: Sequence[Callback],
) -> TrainResult:
    """The dual encoder's pieces for ``loop.fit``, its callbacks, then the test evaluation (rank 0)."""
    t0 = time.time()
    device, distributed, rank, world = _devices(cfg)
    seed_everything(cfg.seed)
    data = data or prepare(cfg, verbose=rank == 0)
    seed_everything(cfg.seed)
    model = build_model(cfg, data).to(device)
    optimizer, loss_fn = optimizer_and_loss(model, cfg)
    scheduler = make_scheduler(optimizer, cfg.optim.decay, cfg.optim.decay_every)
    if extra_terms is None:
        extra_terms = config_terms(cfg, data, device)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    run_dir = cfg.run_dir()
    selection = _Selection(cfg, data)
    start = _resume(cfg, model, optimizer, scheduler, scaler, selection, device) if resume else (0, 0, [])
    net: nn.Module = model
    if distributed:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))

    def step_loss(batch: tuple[TextBatch, VideoBatch]) -> torch.Tensor:
        text, video = batch[0].to(device), batch[1].to(device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            sims = net(text, video)
        loss = loss_fn(sims.float())
        for term in extra_terms:  # e.g. a distillation term against a frozen teacher
            loss = loss + term(sims.float(), text, video)
        return loss

    steps = max(1, (data.num_train // world) // cfg.batch_size)
    ours: list[Callback] = [_Progress(steps, progress and rank == 0)]
    if rank == 0:
        ours += [selection, _LastCheckpoint(cfg, data, selection), _Log(run_dir, cfg.select_metric, progress)]
    if distributed:
        ours.append(_Barrier())
    state = fit(model, optimizer, lambda e: data.epoch_batches(e, cfg.seed, cfg.batch_size, rank, world),
                step_loss, cfg.epochs, scheduler=scheduler, scaler=scaler, grad_clip=cfg.optim.grad_clip,
                callbacks=[*ours, *callbacks], start_epoch=start[0], step=start[1], history=start[2])
    result = TrainResult(run_dir, selection.best_epoch, {}, {}, state.history)
    if rank == 0:
        _test(cfg, model, data, device, result, t0)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return result


def _devices(cfg: TrainConfig) -> tuple[torch.device, bool, int, int]:
    """(device, distributed, rank, world size); under torchrun, the process group joined (and on CUDA the
    process's own GPU, ``LOCAL_RANK``)."""
    device = get_device(cfg.device)
    distributed = _maybe_init_distributed(device)
    rank, world = _dist_info()
    if device.type == "cuda" and distributed:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return device, distributed, rank, world


def _resume(cfg: TrainConfig, model, optimizer, scheduler, scaler, selection: _Selection,
            device: torch.device) -> tuple[int, int, list[dict[str, Any]]]:
    """Restore ``last.pt`` (weights, optimiser, scheduler, scaler, RNG, best so far) -> (the epoch to start
    at, the step count, the history)."""
    path = cfg.run_dir() / "last.pt"
    ckpt = load_checkpoint(path, map_location=device)
    check_config(path, ckpt["config"], cfg.to_dict(), allow=("epochs",))
    load_weights(model, ckpt["model"], path, cfg)
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    scaler.load_state_dict(ckpt.get("scaler", {}))
    set_rng_state(ckpt["rng"])
    selection.best, selection.best_epoch = ckpt["best"], ckpt["best_epoch"]
    return ckpt["epoch"] + 1, ckpt["step"], ckpt["history"]


class _Progress(Callback):
    """A tqdm bar per epoch with the step loss."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled = total, enabled

    def on_epoch_start(self, state: FitState) -> None:
        self.bar = tqdm(total=self.total, desc=f"epoch {state.epoch + 1}/{state.epochs}",
                        disable=not self.enabled, leave=False)

    def on_step_end(self, state: FitState) -> None:
        self.bar.update()
        self.bar.set_postfix(loss=f"{state.losses[-1]:.4f}")

    def on_epoch_end(self, state: FitState) -> None:
        self.bar.close()


class _Selection(Callback):
    """Model selection on the validation split only: after every ``eval_every`` epochs and the last, the
    validation metrics and :func:`assignment_stats` join the epoch's row, and ``best.pt`` is written when
    ``select_metric`` improved (the first maximum wins; without a validation split, the first evaluated
    epoch). The public code selects on the 1k-A test list."""

    def __init__(self, cfg: TrainConfig, data: Prepared):
        self.cfg, self.data, self.best, self.best_epoch = cfg, data, -math.inf, -1

    def on_epoch_end(self, state: FitState) -> None:
        cfg, data, epoch = self.cfg, self.data, state.epoch + 1
        if epoch % cfg.eval_every and epoch != cfg.epochs:
            return
        val = evaluate(state.model, data.val, cfg.eval_batch_size) if data.val is not None else {}
        state.row.update({f"val_{k}": v for k, v in val.items()})
        state.row.update(assignment_stats(state.model, data))
        score = val.get(cfg.select_metric, -math.inf)
        if score > self.best or self.best_epoch < 0:
            self.best, self.best_epoch = score, epoch
            save_checkpoint(cfg.run_dir() / "best.pt", {
                "model": state.model.state_dict(), "config": cfg.to_dict(),
                "epoch": state.epoch, "val": val, "data": data.identity(),
            })


class _LastCheckpoint(Callback):
    """``last.pt`` after every epoch, atomically: everything an exact resume needs (weights, optimiser,
    scheduler, scaler, RNG states, counters, the best so far, the history)."""

    def __init__(self, cfg: TrainConfig, data: Prepared, selection: _Selection):
        self.cfg, self.data, self.selection = cfg, data, selection

    def on_epoch_end(self, state: FitState) -> None:
        save_checkpoint(self.cfg.run_dir() / "last.pt", {
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "scaler": state.scaler.state_dict(),
            "rng": rng_state(),
            "config": self.cfg.to_dict(),
            "data": self.data.identity(),
            "epoch": state.epoch,
            "step": state.step,
            "best": self.selection.best,
            "best_epoch": self.selection.best_epoch,
            "history": state.history,
        })


class _Log(Callback):
    """``history.csv`` / ``history.json`` after every epoch, and the epoch's line when ``progress``."""

    def __init__(self, run_dir: Path, metric: str, progress: bool):
        self.run_dir, self.metric, self.progress = run_dir, metric, progress

    def on_epoch_end(self, state: FitState) -> None:
        _write_history(self.run_dir, state.history)
        if self.progress:
            _print_row(state.row, self.metric)


class _Barrier(Callback):
    """DDP: every rank waits at the end of an epoch until rank 0 has evaluated and written."""

    def on_epoch_end(self, state: FitState) -> None:
        dist.barrier()


def _test(cfg: TrainConfig, model: nn.Module, data: Prepared, device: torch.device, result: TrainResult,
          t0: float) -> None:
    """Evaluate the best checkpoint on the test split once; fill ``result`` and write ``results.json``,
    with the per-query test ranks (:func:`query_ranks`)."""
    run_dir = cfg.run_dir()
    best = load_checkpoint(run_dir / "best.pt", map_location=device)
    load_weights(model, best["model"], run_dir / "best.pt", cfg)
    result.val = best.get("val", {})
    result.test, sims = evaluate(model, data.test, cfg.eval_batch_size, return_sims=True)
    result.seconds = time.time() - t0
    results = {"best_epoch": result.best_epoch, "val": result.val, "test": result.test,
               "seconds": result.seconds, "config": cfg.to_dict(),
               "test_ranks": query_ranks(sims, data.test.query_masks)}
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2))


def query_ranks(sims: torch.Tensor, query_masks: torch.Tensor) -> dict[str, list[float]]:
    """The 0-based, tie-averaged rank of each test query, ``{"t2v": [N_t], "v2t": [N_v]}``
    (``metrics.t2v_ranks`` / ``v2t_ranks``), from the (N_t, N_v) matrix of the real captions and the
    (N_v, C) query masks; rounded to 0.1 (exact: ties give .5) to keep ``results.json`` small."""
    n_v, caps = query_masks.shape
    full = torch.full((n_v * caps, sims.shape[1]), float("nan"), dtype=sims.dtype)  # metrics' layout
    full[query_masks.reshape(-1)] = sims
    return {side: [round(float(r), 1) for r in ranks(full, query_masks)]
            for side, ranks in (("t2v", t2v_ranks), ("v2t", v2t_ranks))}


@torch.no_grad()
def assignment_stats(model, data, max_items: int = 512) -> dict[str, Any]:
    """Mean assignment entropy (nats, over the K real centers renormalised) and center usage of the text
    and video tokens of up to ``max_items`` validation items (the training log): are some centers dead?
    Empty for models without a cross-modal VLAD (the baselines)."""
    if not hasattr(model, "vlad") or not hasattr(model, "video_encoder"):
        return {}
    evalset = data.val or data.test
    dev = next(model.parameters()).device
    with eval_mode(model):
        tokens, tmask = model.text_tokens(evalset.texts.index(slice(0, max_items)).to(dev))
        _, ta = model.vlad.encode_text(tokens, tmask, return_assignments=True)
        enc = model.video_encoder(evalset.videos.index(slice(0, max_items)).to(dev))
        _, va = model.vlad.encode_video(enc.tokens, enc.token_mask, return_assignments=True)
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
