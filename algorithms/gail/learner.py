"""GAIL's learner: PPO whose rewards come from the discriminator, which it trains alongside the policy."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.connectors.learner import GeneralAdvantageEstimation
from ray.rllib.utils.spaces.space_utils import normalize_action

from algorithms.gail.discriminator import DISC_ID, Discriminator
from algorithms.gail.reward import gail_reward
from genlab.rl import ModuleRewardConnector


class GAILLearner(PPOTorchLearner):
    """PPO learner for GAIL (config: :class:`algorithms.gail.algorithm.GAILConfig`).

    - ``build()`` loads the expert pairs (:meth:`load_expert`, from ``config.demos_path``) and inserts a
      :class:`ModuleRewardConnector` before GAE, so advantages use the reward ``gail_reward(logit D)``.
    - D has its own Adam (``config.disc_lr``). Its loss is computed on every PPO minibatch (for the
      metrics), but only the first ``config.disc_steps`` minibatches of each update train it, and none
      when ``config.freeze_discriminator``: the others contribute a detached loss, so D's parameters get
      no gradient and Adam skips them.
    """

    def build(self) -> None:
        super().build()
        self._disc_steps_taken = 0
        self.set_expert(*self.load_expert())
        if not self.config.add_default_connectors_to_learner_pipeline:
            raise ValueError(
                "GAIL puts its reward piece before PPO's GeneralAdvantageEstimation, which is one of RLlib's "
                "default learner connectors: keep add_default_connectors_to_learner_pipeline=True"
            )
        pipeline = self._learner_connector
        pipeline.insert_before(
            GeneralAdvantageEstimation, ModuleRewardConnector(module_id=DISC_ID, reward_fn=self._reward)
        )
        names = [type(c).__name__ for c in pipeline.connectors]
        assert names[-2:] == [ModuleRewardConnector.__name__, GeneralAdvantageEstimation.__name__], names

    def load_expert(self) -> tuple[np.ndarray, np.ndarray]:
        """The expert's (obs, actions) from ``config.demos_path`` (its first ``num_trajectories`` episodes)."""
        from genlab.rl import load_demos

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

    def configure_optimizers_for_module(self, module_id: str, config=None) -> None:
        if module_id != DISC_ID:
            return super().configure_optimizers_for_module(module_id, config)
        params = self.get_parameters(self._module[module_id])
        self.register_optimizer(
            module_id=module_id,
            optimizer=torch.optim.Adam(params),
            params=params,
            lr_or_lr_schedule=self.config.disc_lr,
        )

    def before_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        super().before_gradient_based_update(timesteps=timesteps)
        self._disc_steps_taken = 0

    def compute_losses(self, *, fwd_out: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
        losses = super().compute_losses(fwd_out=fwd_out, batch=batch)
        if self.config.freeze_discriminator or self._disc_steps_taken >= self.config.disc_steps:
            losses[DISC_ID] = losses[DISC_ID].detach()
        else:
            self._disc_steps_taken += 1
        return losses

    def _reward(self, disc: Discriminator, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return gail_reward(disc.logits(obs, actions), self.config.reward_form)
