"""Exponential moving average (Polyak averaging) of a network's weights, used at evaluation time.

Improved-GAN evaluates an average of D's weights; IAF-VAE evaluates with Polyak-averaged weights
(the paper's "exponential moving average of parameters"). The average is a frozen copy of the net:

    θ_avg ← decay · θ_avg + (1 − decay) · θ         after every optimizer step

Buffers (batch-norm statistics, weight-norm gains kept as buffers) are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of ``net`` whose parameters track an exponential moving average of ``net``'s."""

    def __init__(self, net: nn.Module, decay: float):
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.net = net
        self.average = copy.deepcopy(net).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        for avg, p in zip(self.average.parameters(), self.net.parameters()):
            avg.lerp_(p, 1.0 - self.decay)
        for avg, b in zip(self.average.buffers(), self.net.buffers()):
            avg.copy_(b)

    @torch.no_grad()
    def reset(self) -> None:
        """Start the average over from the net's current weights (after a data-dependent init)."""
        self.average.load_state_dict(self.net.state_dict())

    def state_dict(self) -> dict:
        return self.average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.average.load_state_dict(state)
