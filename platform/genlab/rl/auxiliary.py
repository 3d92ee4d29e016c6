"""Learner-only auxiliary modules (GAIL's discriminator, VIME's dynamics model) trained beside the policy.

RLlib trains every module of a Learner's MultiRLModule on every minibatch of PPO's update loop. An auxiliary
model wants less: its own optimizer and learning rate, and a fixed number of gradient steps per training
iteration (GAIL: ``disc_steps``; VIME: the BNN's updates). :class:`AuxiliaryModules` is a Learner mixin that

- registers an Adam optimizer at the module's own learning rate (``configure_optimizers_for_module``);
- lets the module's loss be computed by the learner (``aux_loss``), so the module needs no reference to the
  learner or the config;
- keeps the policy's transitions of the iteration (``keep_aux_data``, which the reward piece calls) outside
  RLlib's train batch, and gives the module a random minibatch of them (the size of PPO's) on each of its steps,
  on the first PPO minibatches only: on the others no forward pass, loss, gradient or even slicing happens for it.
  That is what keeps an auxiliary model from slowing PPO down.

A learner lists its auxiliary modules in ``aux_modules()``: module id -> :class:`AuxBudget`. The mixin uses RLlib's
public Learner API only (``compute_losses``, ``before_gradient_based_update``, ``module``, ``device``).

For the modules themselves: the actions a module sees are clipped to the bounds the env executes
(:func:`action_bounds` puts them in the module's ``model_config``, :func:`register_action_bounds` and
:func:`clip_actions` read them), and :func:`safe_std` is the rule for standardizing their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core import DEFAULT_MODULE_ID, Columns
from ray.rllib.core.rl_module.rl_module import RLModule

ACTION_LOW, ACTION_HIGH = "action_low", "action_high"
"""``model_config`` keys of the action bounds an auxiliary module clips to (absent or None: unbounded)."""


@dataclass(frozen=True)
class AuxBudget:
    lr: float | list[list[float]]
    """Adam learning rate of the module, or a piecewise-linear schedule over env steps ``[[steps, lr], ...]``."""
    steps_per_iteration: int
    """Gradient steps per training iteration (on the first minibatches of PPO's update); 0 = frozen."""


class AuxiliaryModules:
    """Mixin for a ``TorchLearner`` subclass (list it first: ``class MyLearner(AuxiliaryModules, PPOTorchLearner)``)."""

    def aux_modules(self) -> dict[str, AuxBudget]:
        raise NotImplementedError

    def aux_loss(self, module_id: str, module: RLModule, batch: dict[str, Any],
                 fwd_out: dict[str, Any]) -> torch.Tensor:
        """The auxiliary module's loss on its part of this minibatch (log its metrics on ``self.metrics``)."""
        raise NotImplementedError

    def aux_step_wanted(self, module_id: str) -> bool:
        """Whether the module takes its next step of the iteration (a skipped step still counts against the
        budget). Default: always."""
        return True

    # --- RLlib hooks -----------------------------------------------------------------------------
    def configure_optimizers_for_module(self, module_id: str, config=None) -> None:
        budgets = self.aux_modules()
        if module_id not in budgets:
            return super().configure_optimizers_for_module(module_id, config)
        params = self.get_parameters(self.module[module_id])
        self.register_optimizer(module_id=module_id, optimizer=torch.optim.Adam(params), params=params,
                                lr_or_lr_schedule=budgets[module_id].lr)

    def keep_aux_data(self, module_id: str, columns: dict[str, torch.Tensor]) -> None:
        """Keep this iteration's valid transitions (``LOSS_MASK`` rows) for ``module_id``'s steps."""
        mask = columns[Columns.LOSS_MASK]
        self.aux_data = getattr(self, "aux_data", {})
        self.aux_data[module_id] = {k: v[mask] for k, v in columns.items()}

    def before_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        super().before_gradient_based_update(timesteps=timesteps)
        self.aux_steps_taken = dict.fromkeys(self.aux_modules(), 0)

    def compute_losses(self, *, fwd_out: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
        """PPO's losses of this minibatch, plus each auxiliary module's on a draw of its kept transitions while it
        has steps left this iteration (its forward pass happens here, only then)."""
        losses = super().compute_losses(fwd_out=fwd_out, batch=batch)
        for mid, budget in self.aux_modules().items():
            aux_batch = self._aux_minibatch(mid, budget, len(batch[DEFAULT_MODULE_ID][Columns.OBS]))
            if aux_batch is not None:
                module = self.module[mid]
                losses[mid] = self.aux_loss(mid, module.unwrapped(), aux_batch, module.forward_train(aux_batch))
        return losses

    def _aux_minibatch(self, module_id: str, budget: AuxBudget, size: int) -> dict[str, torch.Tensor] | None:
        """``size`` random kept transitions for the module's next step, or None when it takes none now (no data yet,
        budget spent, or ``aux_step_wanted`` declined; a declined step counts against the budget)."""
        data = getattr(self, "aux_data", {}).get(module_id)
        taken = self.aux_steps_taken.get(module_id, 0)
        if data is None or taken >= budget.steps_per_iteration:
            return None
        self.aux_steps_taken[module_id] = taken + 1
        if not self.aux_step_wanted(module_id):
            return None
        n = len(data[Columns.OBS])
        idx = torch.randperm(n, device=data[Columns.OBS].device)[:min(n, size)]
        return {k: v[idx] for k, v in data.items()}


# --- the modules' side -----------------------------------------------------------------------------------------
def action_bounds(action_space: gym.Space, normalize_actions: bool) -> dict[str, Any]:
    """``model_config`` entries with the bounds of the actions the env executes: a bounded Box's, which RLlib clips
    to (in [-1, 1] when it normalizes actions, before rescaling them); none for other spaces."""
    if isinstance(action_space, gym.spaces.Box) and action_space.is_bounded():
        low, high = (-1.0, 1.0) if normalize_actions else (action_space.low.tolist(), action_space.high.tolist())
        return {ACTION_LOW: low, ACTION_HIGH: high}
    return {}


def register_action_bounds(module: RLModule, dim: int) -> None:
    """Buffers ``module.act_low`` / ``act_high`` of shape (dim,) from its ``model_config``'s bounds (absent: ∓inf);
    not persistent: the config sets them, a checkpoint need not."""
    for name, key, default in (("act_low", ACTION_LOW, -np.inf), ("act_high", ACTION_HIGH, np.inf)):
        value = module.model_config.get(key)
        bound = (torch.full((dim,), default) if value is None
                 else torch.as_tensor(np.broadcast_to(np.asarray(value, np.float32), (dim,)).copy()))
        module.register_buffer(name, bound, persistent=False)


def clip_actions(module: RLModule, actions: torch.Tensor) -> torch.Tensor:
    """``actions`` (N, dim) clipped to the module's ``act_low`` / ``act_high`` (:func:`register_action_bounds`)."""
    return torch.maximum(torch.minimum(actions, module.act_high), module.act_low)


def safe_std(std: torch.Tensor) -> torch.Tensor:
    """A standard deviation to divide by: constant features (std <= 1e-6) get std 1."""
    return torch.where(std > 1e-6, std, torch.ones_like(std))
