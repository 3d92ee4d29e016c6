"""GAIL's learner: PPO whose rewards come from the discriminator, which it trains alongside the policy."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core import Columns
from ray.rllib.utils.spaces.space_utils import normalize_action

from algorithms.gail import objective
from algorithms.gail.config import DISC_ID
from algorithms.gail.module import LOGITS, Discriminator
from genlab.rl import connectors
from genlab.rl.auxiliary import AuxBudget, AuxiliaryModules
from genlab.rl.demos import load_demos


class GAILLearner(AuxiliaryModules, PPOTorchLearner):
    """PPO learner for GAIL (config: :class:`algorithms.gail.rllib.GAILConfig`).

    - ``build()`` loads the expert pairs (:meth:`load_expert`, from ``config.demos_path``) and installs the reward
      piece before GAE, so advantages use ``gail_reward(logit D)`` in place of the env reward.
    - D is an auxiliary module: its own Adam at ``disc_lr``, ``disc_steps`` steps per iteration on the first PPO
      minibatches (none when ``freeze_discriminator``), each against ``disc_minibatch_size`` expert pairs.
    """

    def build(self) -> None:
        super().build()
        self.set_expert(*self.load_expert())
        connectors.install(self, connectors.ModuleReward(module_id=DISC_ID, reward_fn=self._reward, mode="replace",
                                                         keep=self.keep_aux_data))

    def aux_modules(self) -> dict[str, AuxBudget]:
        c = self.config
        return {DISC_ID: AuxBudget(lr=c.disc_lr, steps_per_iteration=0 if c.freeze_discriminator else c.disc_steps)}

    def load_expert(self) -> tuple[np.ndarray, np.ndarray]:
        """The expert's (obs, actions) from ``config.demos_path`` (its first ``num_trajectories`` episodes)."""
        demos = load_demos(self.config.demos_path, self.config.env, num_trajectories=self.config.num_trajectories)
        return demos.obs, demos.actions

    def set_expert(self, obs: np.ndarray, actions: np.ndarray) -> None:
        """Use these expert pairs (env-space actions) for D's loss and D's input standardization."""
        disc = self.module[DISC_ID].unwrapped()
        obs_shape, act_space = disc.observation_space.shape, disc.action_space
        if obs.ndim != 1 + len(obs_shape) or obs.shape[1:] != obs_shape or len(obs) != len(actions):
            raise ValueError(
                f"expert obs {obs.shape} / actions {actions.shape} do not fit the env's observation shape "
                f"{obs_shape}: expected (N, {', '.join(map(str, obs_shape))}) and N actions; were the demos "
                "recorded on this env?"
            )
        if isinstance(act_space, gym.spaces.Box) and self.config.normalize_actions:
            # The policy acts in [-1, 1] and RLlib rescales to [low, high] for the env: compare in policy space.
            actions = normalize_action(actions, act_space)
        # np.array copies: the arrays pandas hands out are read-only, which torch warns about.
        self.expert_obs = torch.as_tensor(np.array(obs, dtype=np.float32), device=self._device)
        self.expert_actions = torch.as_tensor(np.array(actions), device=self._device)
        disc.set_input_stats(self.expert_obs, self.expert_actions)

    def sample_expert(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n expert (obs, action) pairs drawn uniformly with replacement."""
        idx = torch.randint(len(self.expert_obs), (n,), device=self._device)
        return self.expert_obs[idx], self.expert_actions[idx]

    def aux_loss(self, module_id: str, module: Discriminator, batch: dict[str, Any],
                 fwd_out: dict[str, Any]) -> torch.Tensor:
        """D's loss on this minibatch's policy pairs against ``disc_minibatch_size`` expert pairs (+ R1)."""
        policy_logits = fwd_out[LOGITS][batch[Columns.LOSS_MASK]]
        expert_obs, expert_actions = self.sample_expert(self.config.disc_minibatch_size)
        expert_x = module.inputs(expert_obs, expert_actions)
        penalty_weight = self.config.grad_penalty
        if penalty_weight > 0:
            expert_x.requires_grad_(True)
        expert_logits = module.net(expert_x).squeeze(-1)
        loss = objective.discriminator_loss(expert_logits, policy_logits)
        stats = {
            "expert_acc": (expert_logits > 0).float().mean(),
            "policy_acc": (policy_logits < 0).float().mean(),
            "expert_prob": torch.sigmoid(expert_logits).mean(),
            "policy_prob": torch.sigmoid(policy_logits).mean(),
        }
        if penalty_weight > 0:
            stats["grad_penalty"] = objective.r1_penalty(expert_logits, expert_x)
            loss = loss + penalty_weight * stats["grad_penalty"]
        stats["loss"] = loss
        self.metrics.log_dict({k: v.detach() for k, v in stats.items()}, key=module_id, window=1)
        return loss

    def _reward(self, disc: Discriminator, columns: dict[str, torch.Tensor]) -> torch.Tensor:
        return objective.gail_reward(disc.logits(columns[Columns.OBS], columns[Columns.ACTIONS]), self.config.reward)
