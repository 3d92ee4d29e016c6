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

A learner lists its auxiliary modules in ``aux_modules()``: module id -> :class:`AuxBudget`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from ray.rllib.core import DEFAULT_MODULE_ID, Columns
from ray.rllib.core.rl_module.rl_module import RLModule


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
        params = self.get_parameters(self._module[module_id])
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

    def _update(self, batch: dict[str, Any]):
        batch = dict(batch)
        for mid, budget in self.aux_modules().items():
            data = getattr(self, "aux_data", {}).get(mid)
            taken = self.aux_steps_taken.get(mid, 0)
            batch.pop(mid, None)
            if data is None or taken >= budget.steps_per_iteration:
                continue
            self.aux_steps_taken[mid] = taken + 1
            if not self.aux_step_wanted(mid):
                continue
            n = len(data[Columns.OBS])
            size = min(n, len(batch[DEFAULT_MODULE_ID][Columns.OBS]))
            idx = torch.randperm(n, device=data[Columns.OBS].device)[:size]
            batch[mid] = {k: v[idx] for k, v in data.items()}
        return super()._update(batch)

    def compute_losses(self, *, fwd_out: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
        aux = {mid: fwd_out.pop(mid) for mid in self.aux_modules() if mid in fwd_out}
        losses = super().compute_losses(fwd_out=fwd_out, batch=batch)
        for mid, out in aux.items():
            losses[mid] = self.aux_loss(mid, self.module[mid].unwrapped(), batch[mid], out)
        return losses
