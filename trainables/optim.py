"""Optimizers and learning-rate schedules by name, built from a config.

Schedules are computed per iteration from the step count alone (state = one integer), so a
resumed run continues on exactly the same curve and checkpoints hold no Python callables.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from tunelab.core.errors import check_choice

from tunelab.trainables.catalog import OPTIMIZERS, SCHEDULES


def build_optimizer(param_groups: Iterable[dict], config) -> torch.optim.Optimizer:
    """The optimizer `config.optimizer` with lr, weight decay and momentum from the config.

    Param groups may carry their own `lr` (e.g. a new classifier layer trained faster); groups
    without one get `config.lr`.
    """
    check_choice("optimizer", config.optimizer, OPTIMIZERS)
    groups = [dict(g) for g in param_groups]
    common = dict(lr=config.lr, weight_decay=config.weight_decay)
    name = config.optimizer
    if name == "sgd":
        return torch.optim.SGD(groups, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0,
                               **common)
    if name == "adagrad":
        return torch.optim.Adagrad(groups, **common)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, momentum=config.momentum, **common)
    if name == "adam":
        return torch.optim.Adam(groups, **common)
    return torch.optim.AdamW(groups, **common)


def lr_factor(config, epoch_progress: float) -> float:
    """Multiplier of the base learning rate at `epoch_progress` (epochs done, fractional).

    step: gamma every step_size epochs; multistep: gamma at each milestone epoch; exponential:
    gamma per epoch; cosine: half-cosine from 1 to min_lr_factor over the run. The original AlexNet tutorial's
    "ExponentialLR stepped once after epoch 10" is multistep with milestones=11, gamma=0.1.
    Warmup ramps linearly from 0 over `warmup_epochs`, on top of any schedule.
    """
    check_choice("schedule", config.schedule, SCHEDULES)
    epoch = int(math.floor(epoch_progress))
    kind = config.schedule
    if kind == "none":
        factor = 1.0
    elif kind == "step":
        factor = config.gamma ** (epoch // config.step_size)
    elif kind == "multistep":
        factor = config.gamma ** sum(1 for m in multistep_milestones(config) if epoch >= m)
    elif kind == "exponential":
        factor = config.gamma ** epoch
    else:
        t = min(1.0, epoch_progress / config.epochs)
        factor = config.min_lr_factor + (1 - config.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * t))
    if config.warmup_epochs > 0 and epoch_progress < config.warmup_epochs:
        factor *= epoch_progress / config.warmup_epochs
    return factor


def multistep_milestones(config) -> tuple[int, ...]:
    """Explicit milestones, else `milestone_fractions` of the run (AdaRand's 30%/60%/80%)."""
    if config.milestones:
        return tuple(config.milestones)
    return tuple(max(1, round(f * config.epochs)) for f in config.milestone_fractions)


class LRSchedule:
    """Sets every group's lr to its base lr times `lr_factor`, once per optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, config, steps_per_epoch: int):
        self.optimizer = optimizer
        self.config = config
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.step_count = 0
        self._apply()

    def _apply(self) -> None:
        # Warmup counts the step being taken, so the first step has a non-zero lr.
        progress = (self.step_count + (1 if self.config.warmup_epochs > 0 else 0)) / self.steps_per_epoch
        factor = lr_factor(self.config, progress)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def current_lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.base_lrs = list(state["base_lrs"])
        self._apply()
