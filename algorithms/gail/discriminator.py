"""GAIL's discriminator: a learner-only RLModule trained with a self-supervised logistic loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from ray.rllib.core import Columns
from ray.rllib.core.rl_module.apis import SelfSupervisedLossAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

if TYPE_CHECKING:
    from algorithms.gail.algorithm import GAILConfig
    from algorithms.gail.learner import GAILLearner

DISC_ID = "disc"
"""Module id of the discriminator in the learner's MultiRLModule (and of its metrics)."""
LOGITS = "logits"


class Discriminator(TorchRLModule, SelfSupervisedLossAPI):
    """D(s, a) = sigmoid(logit(s, a)): the probability that the pair (s, a) is the expert's.

    An MLP (tanh) on concat(standardized obs, action), where Box actions are clipped to the range the env
    executes (``model_config["action_low"/"action_high"]``) and standardized, and Discrete actions are
    one-hot. The standardization statistics are the expert data's, kept as buffers (so they are
    checkpointed with the weights) and set by :meth:`set_input_stats` when the learner gets its demos.

    ``model_config``: ``hiddens`` (widths), ``action_low`` / ``action_high`` (Box only; None = no clipping).
    """

    def setup(self) -> None:
        obs_dim = int(np.prod(self.observation_space.shape))
        discrete = isinstance(self.action_space, gym.spaces.Discrete)
        act_dim = int(self.action_space.n) if discrete else int(np.prod(self.action_space.shape))
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

    def loss(
        self,
        policy_logits: torch.Tensor,
        expert_obs: torch.Tensor,
        expert_actions: torch.Tensor,
        grad_penalty: float,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logistic loss −E_E[log D] − E_π[log(1 − D)] (+ R1 penalty) and its statistics.

        The paper's D-step (Algorithm 1, with D_paper = 1 − D). With ``grad_penalty`` γ > 0 it adds the R1
        penalty γ/2·E_E‖∇_x logit(x)‖² on the standardized expert inputs x (Mescheder et al. 2018), which
        keeps D from growing sharp around the expert data.
        """
        expert_x = self.inputs(expert_obs, expert_actions)
        if grad_penalty > 0:
            expert_x.requires_grad_(True)
        expert_logits = self.net(expert_x).squeeze(-1)
        expert_loss = F.binary_cross_entropy_with_logits(expert_logits, torch.ones_like(expert_logits))
        policy_loss = F.binary_cross_entropy_with_logits(policy_logits, torch.zeros_like(policy_logits))
        loss = expert_loss + policy_loss
        stats = {
            "expert_acc": (expert_logits > 0).float().mean(),
            "policy_acc": (policy_logits < 0).float().mean(),
            "expert_prob": torch.sigmoid(expert_logits).mean(),
            "policy_prob": torch.sigmoid(policy_logits).mean(),
        }
        if grad_penalty > 0:
            (grad,) = torch.autograd.grad(expert_logits.sum(), expert_x, create_graph=True)
            penalty = 0.5 * grad.pow(2).sum(-1).mean()
            loss = loss + grad_penalty * penalty
            stats["grad_penalty"] = penalty
        stats["loss"] = loss
        return loss, {k: v.detach() for k, v in stats.items()}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, torch.Tensor]:
        return {LOGITS: self.logits(batch[Columns.OBS], batch[Columns.ACTIONS])}

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        raise NotImplementedError("the discriminator is learner-only: call forward_train() or logits()")

    def compute_self_supervised_loss(
        self,
        *,
        learner: GAILLearner,
        module_id: str,
        config: GAILConfig,
        batch: dict[str, Any],
        fwd_out: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """D's loss on this PPO minibatch's policy pairs against ``config.disc_minibatch_size`` expert pairs."""
        policy_logits = fwd_out[LOGITS][batch[Columns.LOSS_MASK]]
        expert_obs, expert_actions = learner.sample_expert(config.disc_minibatch_size)
        loss, stats = self.loss(policy_logits, expert_obs, expert_actions, config.grad_penalty)
        learner.metrics.log_dict(stats, key=module_id, window=1)
        return loss

    def _clip(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(actions, self.act_high), self.act_low)


def _bound(value: Any, default: float, dim: int) -> torch.Tensor:
    if value is None:
        return torch.full((dim,), default)
    return torch.as_tensor(np.broadcast_to(np.asarray(value, np.float32), (dim,)).copy())


def _safe_std(x: torch.Tensor) -> torch.Tensor:
    std = x.std(0)
    return torch.where(std > 1e-6, std, torch.ones_like(std))
