"""Learning-rate schedules that the methods' papers use, as pure functions of the finished epoch count."""

from __future__ import annotations

import torch


def linear_decay(base_lr: float, epoch: int, start: int, length: int) -> float:
    """``base_lr`` until ``start`` finished epochs, then linearly to 0 over ``length`` epochs (0 = constant).

    Improved-GAN's code decays linearly over the second half of training; ``length == 0`` keeps ``base_lr``.
    """
    if length == 0:
        return base_lr
    return base_lr * min(max((start + length - epoch) / length, 0.0), 1.0)


def set_lr(optimizers: dict[str, torch.optim.Optimizer] | list[torch.optim.Optimizer], lr: float) -> None:
    """Set every parameter group's learning rate of these optimizers to ``lr``."""
    opts = optimizers.values() if isinstance(optimizers, dict) else optimizers
    for opt in opts:
        for group in opt.param_groups:
            group["lr"] = lr
