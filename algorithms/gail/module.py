"""GAIL's discriminator as a learner-only RLModule: D(s, a) = sigmoid(logit(s, a)), the expert's probability."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from ray.rllib.core import Columns
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from genlab.rl.auxiliary import clip_actions, register_action_bounds, safe_std

LOGITS = "logits"


class RunningStats(nn.Module):
    """Mean and variance of every row seen so far, per feature (Chan et al.'s parallel merge); buffers, so they
    are checkpointed with the module that holds them."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Add the rows of ``x`` (N, dim)."""
        n = len(x)
        if n == 0:
            return
        mean, var = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = mean - self.mean
        self.var.copy_((self.var * self.count + var * n + delta.pow(2) * self.count * n / total) / total)
        self.mean.add_(delta * n / total)
        self.count.copy_(total)

    @property
    def std(self) -> torch.Tensor:
        return safe_std(self.var.sqrt())


class Discriminator(TorchRLModule):
    """An MLP (tanh) on concat(standardized obs, action).

    Box actions are clipped to the range the env executes (``model_config["action_low"/"action_high"]``) and
    standardized with the obs; Discrete actions are one-hot. The standardization statistics are buffers
    (checkpointed with the weights): the expert data's (:meth:`set_input_stats`, when the learner gets its demos),
    or, once :meth:`update_policy_stats` has seen policy pairs, those of an even mix of expert and policy pairs,
    as imitation's RunningNorm sees them (D's batches are half expert, half policy). A policy far from the expert
    then does not hand D inputs tens of expert standard deviations out, where its tanh units saturate and every
    such pair gets the same (zero) reward.
    ``model_config``: ``hiddens`` (widths), ``action_low`` / ``action_high`` (Box only; None = no clipping).
    The learner computes its loss (``algorithms.gail.objective``); the module only scores pairs. ``reward_stats``
    holds the running statistics of the rewards D gave (used when the learner normalizes them), ``advantage_stats``
    those of the policy's raw advantages (``advantage_norm: running``).
    """

    def setup(self) -> None:
        obs_dim = int(np.prod(self.observation_space.shape))
        act_dim = int(self.action_space.n) if self.discrete else int(np.prod(self.action_space.shape))
        layers: list[nn.Module] = []
        width = obs_dim + act_dim
        for hidden in self.model_config["hiddens"]:
            layers += [nn.Linear(width, hidden), nn.Tanh()]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

        features = obs_dim + (0 if self.discrete else act_dim)  # what is standardized: obs and Box actions
        self.register_buffer("in_mean", torch.zeros(features))
        self.register_buffer("in_std", torch.ones(features))
        self.expert_stats, self.policy_stats = RunningStats(features), RunningStats(features)
        self.reward_stats = RunningStats(1)
        self.advantage_stats = RunningStats(1)
        register_action_bounds(self, act_dim)

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)

    @torch.no_grad()
    def set_input_stats(self, obs: torch.Tensor, actions: torch.Tensor) -> None:
        """Standardize D's inputs with these (expert) samples' mean and std; constant features get std 1."""
        self.expert_stats.count.zero_()  # replace, not add to, any earlier expert data
        self.expert_stats.update(self._features(obs, actions))
        self._use_stats()

    @torch.no_grad()
    def update_policy_stats(self, obs: torch.Tensor, actions: torch.Tensor) -> None:
        """Add policy pairs to the running statistics; from now on D standardizes with the expert-policy mix."""
        self.policy_stats.update(self._features(obs, actions))
        self._use_stats()

    def _use_stats(self) -> None:
        e, p = self.expert_stats, self.policy_stats
        if p.count > 0:  # the even mixture of the two distributions
            mean = (e.mean + p.mean) / 2
            var = (e.var + p.var) / 2 + ((e.mean - p.mean) / 2).pow(2)
        else:
            mean, var = e.mean, e.var
        self.in_mean.copy_(mean)
        self.in_std.copy_(safe_std(var.sqrt()))

    def _features(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        obs = obs.flatten(1).float()
        return obs if self.discrete else torch.cat([obs, clip_actions(self, actions.flatten(1).float())], dim=-1)

    def inputs(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """D's input: standardized concat(obs, clipped action), or standardized obs + one-hot action."""
        x = (self._features(obs, actions) - self.in_mean) / self.in_std
        if self.discrete:
            x = torch.cat([x, F.one_hot(actions.long(), int(self.action_space.n)).float()], dim=-1)
        return x

    def logits(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """logit D(s, a), shape (B,)."""
        return self.net(self.inputs(obs, actions)).squeeze(-1)

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, torch.Tensor]:
        return {LOGITS: self.logits(batch[Columns.OBS], batch[Columns.ACTIONS])}

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        raise NotImplementedError("the discriminator is learner-only: call forward_train() or logits()")
