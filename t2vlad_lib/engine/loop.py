"""The training loop: epochs of optimiser steps; everything else is a callback.

    state = fit(model, optimizer, batches, step_loss, epochs, scheduler=sched, callbacks=[...])

Each epoch: ``model.train()``; for each batch of ``batches(epoch)``: ``loss = step_loss(batch)`` (a scalar),
zero the gradients, backward (through ``scaler``: fp16 mixed precision), clip the gradient norm to
``grad_clip``, step. After the epoch: its row in ``state.history`` (epoch, step, the lr it trained at,
mean loss, seconds), then ``scheduler.step()``. Evaluation and model selection, checkpoints, logs, progress
bars and per-step schedules are :class:`Callback` objects called at six events with the one
:class:`FitState`; extra loss terms live in ``step_loss``. The shape is minGPT's trainer
(``mingpt/trainer.py``: a short run loop, callbacks by event). The dual encoder's trainer (``train.py``)
and the matching head (``extensions.matching``) both train with :func:`fit`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..model.optim import optimizer_step

__all__ = ["fit", "FitState", "Callback", "EVENTS"]

EVENTS = ("on_fit_start", "on_epoch_start", "on_step_start", "on_step_end", "on_epoch_end", "on_fit_end")


@dataclass
class FitState:
    """What the loop knows, handed to every callback.

    epoch: the current epoch (0-based); step: optimiser steps so far (all epochs); losses: the current
    epoch's step losses; history: one row per finished epoch, the current one (``row``) appended before
    ``on_epoch_end``, so callbacks can add columns to it (validation metrics)."""

    model: nn.Module
    optimizer: Any
    scheduler: Any
    scaler: torch.amp.GradScaler
    epochs: int
    epoch: int = 0
    step: int = 0
    losses: list[float] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def row(self) -> dict[str, Any]:
        return self.history[-1]


class Callback:
    """The hooks of :func:`fit` (:data:`EVENTS`), each called with the :class:`FitState`; a subclass
    overrides the ones it needs. ``on_step_start`` comes before the batch's loss, ``on_step_end`` after
    the optimiser step."""

    def on_fit_start(self, state: FitState) -> None: ...
    def on_epoch_start(self, state: FitState) -> None: ...
    def on_step_start(self, state: FitState) -> None: ...
    def on_step_end(self, state: FitState) -> None: ...
    def on_epoch_end(self, state: FitState) -> None: ...
    def on_fit_end(self, state: FitState) -> None: ...


def fit(
    model: nn.Module,
    optimizer: Any,
    batches: Callable[[int], Iterable[Any]],
    step_loss: Callable[[Any], torch.Tensor],
    epochs: int,
    *,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
    callbacks: Sequence[Callback] = (),
    start_epoch: int = 0,
    step: int = 0,
    history: list[dict[str, Any]] | None = None,
) -> FitState:
    """Train ``model`` from epoch ``start_epoch`` to ``epochs`` (module docstring) and return the final state.

    Args:
        batches: epoch -> the batches of that epoch. step_loss: batch -> scalar loss (the forward pass).
        scheduler: stepped once per epoch (None: none; a per-step schedule is a callback).
        scaler: fp16 gradient scaler (default: a disabled one). grad_clip: max gradient norm (None: no clip).
        start_epoch, step, history: where a resumed run continues (its epoch, step count and rows).
    """
    scaler = scaler or torch.amp.GradScaler("cuda", enabled=False)
    state = FitState(model, optimizer, scheduler, scaler, epochs, start_epoch, step,
                     history=list(history or []))

    def emit(event: str) -> None:
        for callback in callbacks:
            getattr(callback, event)(state)

    emit("on_fit_start")
    for epoch in range(start_epoch, epochs):
        state.epoch, state.losses, t0 = epoch, [], time.perf_counter()
        model.train()
        emit("on_epoch_start")
        for batch in batches(epoch):
            emit("on_step_start")
            loss = step_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            optimizer_step(optimizer, scaler, model, grad_clip)
            state.losses.append(loss.item())
            state.step += 1
            emit("on_step_end")
        lr = optimizer.param_groups[0]["lr"]  # the rate this epoch trained at
        if scheduler is not None:
            scheduler.step()
        state.history.append({"epoch": epoch + 1, "step": state.step, "lr": lr,
                              "train_loss": sum(state.losses) / max(1, len(state.losses)),
                              "epoch_seconds": time.perf_counter() - t0})
        emit("on_epoch_end")
    emit("on_fit_end")
    return state
