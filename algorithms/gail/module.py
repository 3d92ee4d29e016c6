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

LOGITS = "logits"


class Discriminator(TorchRLModule):
    """An MLP (tanh) on concat(standardized obs, action).

    Box actions are clipped to the range the env executes (``model_config["action_low"/"action_high"]``) and
    standardized; Discrete actions are one-hot. The standardization statistics are the expert data's, kept as
    buffers (checkpointed with the weights) and set by :meth:`set_input_stats` when the learner gets its demos.
    ``model_config``: ``hiddens`` (widths), ``action_low`` / ``action_high`` (Box only; None = no clipping).
    The learner computes its loss (``algorithms.gail.objective``); the module only scores pairs.
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

        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.register_buffer("act_mean", torch.zeros(act_dim))
        self.register_buffer("act_std", torch.ones(act_dim))
        low, high = self.model_config.get("action_low"), self.model_config.get("action_high")
        self.register_buffer("act_low", _bound(low, -np.inf, act_dim), persistent=False)
        self.register_buffer("act_high", _bound(high, np.inf, act_dim), persistent=False)

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)

    @torch.no_grad()
    def set_input_stats(self, obs: torch.Tensor, actions: torch.Tensor) -> None:
        """Standardize D's inputs with these (expert) samples' mean and std; constant features get std 1."""
        self.obs_mean.copy_(obs.flatten(1).mean(0))
        self.obs_std.copy_(_safe_std(obs.flatten(1)))
        if not self.discrete:
            actions = self._clip(actions.flatten(1))
            self.act_mean.copy_(actions.mean(0))
            self.act_std.copy_(_safe_std(actions))

    def inputs(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """D's input: concat(standardized obs, standardized clipped action or one-hot action)."""
        obs = (obs.flatten(1).float() - self.obs_mean) / self.obs_std
        if self.discrete:
            act = F.one_hot(actions.long(), int(self.action_space.n)).float()
        else:
            act = (self._clip(actions.flatten(1).float()) - self.act_mean) / self.act_std
        return torch.cat([obs, act], dim=-1)

    def logits(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """logit D(s, a), shape (B,)."""
        return self.net(self.inputs(obs, actions)).squeeze(-1)

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, torch.Tensor]:
        return {LOGITS: self.logits(batch[Columns.OBS], batch[Columns.ACTIONS])}

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        raise NotImplementedError("the discriminator is learner-only: call forward_train() or logits()")

    def _clip(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(actions, self.act_high), self.act_low)


def _bound(value: Any, default: float, dim: int) -> torch.Tensor:
    if value is None:
        return torch.full((dim,), default)
    return torch.as_tensor(np.broadcast_to(np.asarray(value, np.float32), (dim,)).copy())


def _safe_std(x: torch.Tensor) -> torch.Tensor:
    std = x.std(0)
    return torch.where(std > 1e-6, std, torch.ones_like(std))
