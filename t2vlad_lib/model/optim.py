"""Optimisers of the paper and of the port: Ranger (RAdam + Lookahead) and AdamW, with step decay.

The paper (sec. 4.1) uses Ranger with weight decay 1e-4, lr 1e-4 decayed x0.9 every 5 epochs; the
released port uses AdamW with the same schedule and gradient clipping at 2. (The PyPI package named
``ranger`` is unrelated; Ranger here is ``torch.optim.RAdam`` inside a small Lookahead wrapper.)
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Lookahead", "make_optimizer", "make_scheduler", "optimizer_step", "OPTIMIZERS"]

OPTIMIZERS = ("ranger", "adamw", "radam")


class Lookahead:
    """Lookahead (Zhang et al. 2019): every ``k`` inner steps slow += alpha (fast - slow), then fast <- slow.

    Wraps any optimiser; ``param_groups`` are the inner optimiser's, so LR schedulers work on
    :attr:`inner`. ``state_dict`` carries the inner state, the slow weights and the step counter.
    """

    def __init__(self, inner: torch.optim.Optimizer, k: int = 6, alpha: float = 0.5):
        if k < 1 or not 0.0 < alpha <= 1.0:
            raise ValueError(f"Lookahead: need k >= 1 and 0 < alpha <= 1, got k={k}, alpha={alpha}")
        self.inner, self.k, self.alpha = inner, k, alpha
        self.steps = 0
        self.slow = [[p.detach().clone() for p in g["params"]] for g in inner.param_groups]

    @property
    def param_groups(self) -> list[dict]:
        return self.inner.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        loss = self.inner.step(closure)
        self.sync()
        return loss

    @torch.no_grad()
    def sync(self) -> None:
        """Count one inner step and pull the fast weights back every k steps (call it yourself after
        ``GradScaler.step(lookahead.inner)`` in mixed precision)."""
        self.steps += 1
        if self.steps % self.k == 0:
            for group, slow in zip(self.inner.param_groups, self.slow, strict=True):
                for p, s in zip(group["params"], slow, strict=True):
                    s.add_(p - s, alpha=self.alpha)
                    p.copy_(s)

    def state_dict(self) -> dict:
        return {
            "inner": self.inner.state_dict(),
            "slow": self.slow,
            "steps": self.steps,
            "k": self.k,
            "alpha": self.alpha,
        }

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state["inner"])
        self.steps, self.k, self.alpha = state["steps"], state["k"], state["alpha"]
        for mine, theirs in zip(self.slow, state["slow"], strict=True):
            for s, t in zip(mine, theirs, strict=True):
                s.copy_(t)


def make_optimizer(
    params: list[nn.Parameter] | list[dict], name: str, lr: float, weight_decay: float
) -> torch.optim.Optimizer | Lookahead:
    """``"ranger"`` (RAdam + Lookahead, the paper), ``"adamw"`` (the port) or ``"radam"``."""
    if name == "ranger":
        return Lookahead(
            torch.optim.RAdam(params, lr=lr, weight_decay=weight_decay, decoupled_weight_decay=True)
        )
    if name == "radam":
        return torch.optim.RAdam(params, lr=lr, weight_decay=weight_decay, decoupled_weight_decay=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimiser {name!r}; valid: {', '.join(OPTIMIZERS)}")


def make_scheduler(
    optimizer: torch.optim.Optimizer | Lookahead, decay: float = 0.9, every_epochs: int = 5
) -> torch.optim.lr_scheduler.StepLR:
    """lr x ``decay`` every ``every_epochs`` epochs (call ``.step()`` once per epoch)."""
    inner = optimizer.inner if isinstance(optimizer, Lookahead) else optimizer
    return torch.optim.lr_scheduler.StepLR(inner, step_size=every_epochs, gamma=decay)


def optimizer_step(optimizer, scaler: torch.amp.GradScaler, model: nn.Module, clip: float | None) -> None:
    """Clip the gradients and step; with fp16 mixed precision the scaler steps Lookahead's inner optimiser."""
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
