"""VIME's learner: PPO whose rewards get the information-gain bonus of a Bayesian dynamics model it trains."""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core import Columns

from algorithms.vime import objective
from algorithms.vime.hparams import BNN_ID, EXPLORE, INTRINSIC
from algorithms.vime.module import BayesianDynamics
from genlab.rl import connectors
from genlab.rl.auxiliary import AuxBudget, AuxiliaryModules


class ReplayPool:
    """The last ``capacity`` transitions as (raw BNN input concat(s, a), s' − s), on one device; FIFO."""

    def __init__(self, capacity: int, in_dim: int, out_dim: int, device: torch.device | str = "cpu"):
        self.inputs = torch.zeros(capacity, in_dim, device=device)
        self.deltas = torch.zeros(capacity, out_dim, device=device)
        self.capacity, self.size, self.top = capacity, 0, 0

    def __len__(self) -> int:
        return self.size

    def add(self, inputs: torch.Tensor, deltas: torch.Tensor) -> None:
        n = len(inputs)
        if n >= self.capacity:  # only the newest fit
            inputs, deltas, n = inputs[-self.capacity:], deltas[-self.capacity:], self.capacity
        idx = (self.top + torch.arange(n, device=self.inputs.device)) % self.capacity
        self.inputs[idx], self.deltas[idx] = inputs, deltas
        self.top = (self.top + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(self.size, (n,), device=self.inputs.device)
        return self.inputs[idx], self.deltas[idx]

    def stats(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input mean, input std, target mean, target std) over the pool."""
        x, d = self.inputs[: self.size], self.deltas[: self.size]
        return x.mean(0), x.std(0, unbiased=False), d.mean(0), d.std(0, unbiased=False)


class VIMELearner(AuxiliaryModules, PPOTorchLearner):
    """PPO learner for VIME (config: :class:`algorithms.vime.rllib.VIMEConfig`).

    Once per iteration, on the whole train batch and before GAE (the reward piece, ``mode="add"``):

    1. the information gain of every valid transition under the current BNN (none on the first iteration, when
       the BNN has seen no data), divided by the mean of the last ``normalize_window`` iterations' median IG (or
       mean IG, ``ig_normalizer``) and weighted by η (decayed by ``eta_decay`` per iteration, and by
       ``eta_decay_after_reward`` per iteration once the env has paid anything), less the batch's mean with
       ``center_bonus`` and scaled down to ``bonus_cap`` × what the env paid where it paid, is added to the env
       reward;
    2. the transitions join the replay pool, whose statistics then standardize the BNN's inputs and targets.

    Then the BNN, an auxiliary module (its own Adam at ``bnn_lr``), takes ``bnn_updates`` ELBO steps during the
    first PPO minibatches, each on ``bnn_batch_size`` transitions drawn from the pool.
    It also counts the transitions on which the env paid anything (``explore/rewarded_steps``, and
    ``explore/reward_found``: 1 once there was one), the sparse tasks' measure of whether exploration found reward.
    The pool and the IG window live in the learner and are not checkpointed: a restored run refills them. η's decay
    and the reward count are buffers of the BNN module, so they are checkpointed with it.
    """

    def build(self) -> None:
        super().build()
        bnn: BayesianDynamics = self.module[BNN_ID].unwrapped()
        self.pool = ReplayPool(self.config.replay_pool_size, bnn.in_dim, bnn.obs_dim, self.device)
        self.ig_scales: deque[float] = deque(maxlen=self.config.normalize_window)
        connectors.install(self, connectors.ModuleReward(module_id=BNN_ID, reward_fn=self._bonus, mode="add",
                                                         next_obs=True, keep=self.keep_aux_data))

    def aux_modules(self) -> dict[str, AuxBudget]:
        return {BNN_ID: AuxBudget(lr=self.config.bnn_lr, steps_per_iteration=self.config.bnn_updates)}

    def aux_loss(self, module_id: str, module: BayesianDynamics, batch: dict[str, Any],
                 fwd_out: dict[str, Any]) -> torch.Tensor:
        """The negative ELBO per transition on ``bnn_batch_size`` transitions of the replay pool."""
        c = self.config
        x, y = module.standardize(*self.pool.sample(c.bnn_batch_size))
        mus, rhos = module.params()
        log_lik = module.expected_log_likelihood(mus, rhos, x, y, module.draw_noise(c.bnn_samples),
                                                 c.likelihood_std).mean()
        kl = module.kl_to_prior(c.prior_std)
        loss = objective.negative_elbo(log_lik, kl, len(self.pool))
        self.metrics.log_dict({"loss": loss.detach(), "nll": -log_lik.detach(), "kl": kl.detach()},
                              key=module_id, window=1)
        return loss

    def information_gain(self, bnn: BayesianDynamics, raw_inputs: torch.Tensor,
                         deltas: torch.Tensor) -> torch.Tensor:
        """IG of each transition under the current BNN (``ig_method``), one set of draws ε for the batch."""
        c = self.config
        x, y = bnn.standardize(raw_inputs, deltas)
        return bnn.information_gain(x, y, noise=bnn.draw_noise(c.bnn_samples), likelihood_std=c.likelihood_std,
                                    step_size=c.ig_step_size, method=c.ig_method)

    def _bonus(self, bnn: BayesianDynamics, columns: dict[str, torch.Tensor]) -> torch.Tensor:
        c = self.config
        mask = columns[Columns.LOSS_MASK]
        obs, next_obs = columns[Columns.OBS][mask], columns[Columns.NEXT_OBS][mask]
        raw_inputs = bnn.raw_inputs(obs, columns[Columns.ACTIONS][mask])
        deltas = (next_obs - obs).flatten(1).float()
        values = torch.zeros_like(columns[Columns.REWARDS], dtype=torch.float32)
        if bnn.rewarded_steps > 0:  # the env paid on an earlier batch
            bnn.rewarded_iterations += 1
        if len(self.pool) > 0 and len(raw_inputs) > 0:
            ig = self.information_gain(bnn, raw_inputs, deltas)
            summary = {"median": ig.median().item(), "mean": ig.mean().item()}
            self.ig_scales.append(summary[c.ig_normalizer])
            scale = sum(self.ig_scales) / len(self.ig_scales)
            eta = (c.eta * c.eta_decay**bnn.bonus_iterations.item()
                   * c.eta_decay_after_reward**bnn.rewarded_iterations.item())
            bonus = eta * ig / scale if scale > 0 else torch.zeros_like(ig)
            if c.center_bonus:
                bonus = bonus - bonus.mean()
            env_total = columns[Columns.REWARDS][mask].abs().sum().item()
            if c.bonus_cap is not None and env_total > 0:
                bonus = bonus * min(1.0, c.bonus_cap * env_total / max(bonus.abs().sum().item(), 1e-12))
            values[mask] = bonus
            bnn.bonus_iterations += 1
            stats = {"bonus_mean": bonus.mean().item(), "ig_mean": summary["mean"], "ig_median": summary["median"],
                     "eta": eta}
            if env_total > 0:  # undefined while the env has paid nothing (a sparse task before the goal)
                stats["ratio"] = bonus.abs().sum().item() / env_total
            self.metrics.log_dict(stats, key=INTRINSIC, window=1)
        bnn.rewarded_steps += (columns[Columns.REWARDS][mask] != 0).sum()
        self.metrics.log_dict({"reward_found": float(bnn.rewarded_steps > 0),
                               "rewarded_steps": float(bnn.rewarded_steps)}, key=EXPLORE, window=1)
        self.pool.add(raw_inputs, deltas)
        bnn.set_stats(*self.pool.stats())
        return values
