"""GAIL's learner: PPO whose rewards come from the discriminator, which it trains alongside the policy."""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core import DEFAULT_MODULE_ID, Columns
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.spaces.space_utils import normalize_action

from algorithms.gail import objective
from algorithms.gail.hparams import DISC_ID
from algorithms.gail.module import LOGITS, Discriminator
from genlab.rl import connectors
from genlab.rl.auxiliary import AuxBudget, AuxiliaryModules
from genlab.rl.demos import load_demos
from genlab.rl.minibatches import MinibatchLoop


class GAILLearner(AuxiliaryModules, MinibatchLoop, PPOTorchLearner):
    """PPO learner for GAIL (config: :class:`algorithms.gail.rllib.GAILConfig`).

    - ``build()`` loads the expert pairs (:meth:`load_expert`, from ``config.demos_path``) and installs the reward
      piece before GAE, so advantages use ``gail_reward(logit D)`` in place of the env reward.
    - D is an auxiliary module: its own Adam at ``disc_lr``, ``disc_steps`` steps per iteration on the first PPO
      minibatches (none when ``freeze_discriminator``), each against ``disc_minibatch_size`` expert pairs.
    - ``advantage_norm`` other than "batch": a piece right after GAE rescales the advantages (:meth:`_advantages`).
    - PPO's epochs run as one loop inside the learner (:class:`genlab.rl.minibatches.MinibatchLoop`): RLlib's
      per-minibatch bookkeeping cost as much as the small networks' gradient steps.
    """

    def build(self) -> None:
        super().build()
        self.policy_replay: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=max(self.config.disc_replay, 1))
        self.set_expert(*self.load_expert())
        connectors.install(self, connectors.ModuleReward(module_id=DISC_ID, reward_fn=self._reward, mode="replace",
                                                         keep=self.keep_aux_data))
        if self.config.advantage_norm != "batch":
            connectors.install_after_gae(self, connectors.PolicyAdvantages(advantage_fn=self._advantages))

    def aux_modules(self) -> dict[str, AuxBudget]:
        c = self.config
        lr = c.disc_lr
        if c.disc_lr_decay and isinstance(c.lr, list):  # the policy's piecewise-linear schedule, scaled to disc_lr
            lr = [[t, c.disc_lr * value / c.lr[0][1]] for t, value in c.lr]
        return {DISC_ID: AuxBudget(lr=lr, steps_per_iteration=0 if c.freeze_discriminator else c.disc_steps)}

    def aux_step_wanted(self, module_id: str) -> bool:
        """The accuracy gate (``disc_max_acc``): D skips a step while it tells a fresh draw of expert pairs and of
        this iteration's policy pairs apart better than that."""
        if self.config.disc_max_acc >= 1.0:
            return True
        n = self.config.disc_minibatch_size
        disc = self.module[DISC_ID].unwrapped()
        with torch.no_grad():
            expert_logits = disc.logits(*self.sample_expert(n))
            policy_logits = disc.logits(*self.sample_policy(n))
        acc = 0.5 * ((expert_logits > 0).float().mean() + (policy_logits < 0).float().mean()).item()
        self.metrics.log_value((DISC_ID, "gate_acc"), acc, window=1)
        return acc <= self.config.disc_max_acc

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
        self.expert_obs = torch.as_tensor(np.array(obs, dtype=np.float32), device=self.device)
        self.expert_actions = torch.as_tensor(np.array(actions), device=self.device)
        disc.set_input_stats(self.expert_obs, self.expert_actions)

    def sample_expert(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n expert (obs, action) pairs drawn uniformly with replacement."""
        idx = torch.randint(len(self.expert_obs), (n,), device=self.device)
        return self.expert_obs[idx], self.expert_actions[idx]

    def sample_policy(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n policy (obs, action) pairs drawn uniformly from the last ``disc_replay`` iterations' batches (this
        iteration's with ``disc_replay`` 0)."""
        obs = torch.cat([o for o, _ in self.policy_replay])
        actions = torch.cat([a for _, a in self.policy_replay])
        idx = torch.randint(len(obs), (n,), device=obs.device)
        return obs[idx], actions[idx]

    def aux_loss(self, module_id: str, module: Discriminator, batch: dict[str, Any],
                 fwd_out: dict[str, Any]) -> torch.Tensor:
        """D's loss on policy pairs (this PPO minibatch's, or with ``disc_replay`` ``disc_minibatch_size`` drawn
        from the recent batches) against ``disc_minibatch_size`` expert pairs (+ R1)."""
        if self.config.disc_replay:
            policy_logits = module.logits(*self.sample_policy(self.config.disc_minibatch_size))
        else:
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

    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: dict[str, Any],
                                fwd_out: dict[str, Any]) -> torch.Tensor:
        """PPO's loss of the policy, plus, with ``bc_weight`` β > 0, β × the BC loss (:meth:`bc_loss`) of a draw of
        expert pairs as large as the minibatch."""
        loss = super().compute_loss_for_module(module_id=module_id, config=config, batch=batch, fwd_out=fwd_out)
        if module_id != DEFAULT_MODULE_ID or self.config.bc_weight == 0:
            return loss
        bc = self.bc_loss(*self.sample_expert(len(batch[Columns.OBS])))
        self.metrics.log_value((DEFAULT_MODULE_ID, "bc_loss"), bc.detach(), window=1)  # -> BC_LOSS
        return loss + self.config.bc_weight * bc

    def bc_loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The behavior-cloning loss of these (obs, action) pairs (actions in the policy's space): for discrete
        actions the policy's mean negative log-likelihood of them; for continuous ones the mean squared distance of
        the policy's mean action to them (half of it: the NLL at unit std), which leaves the policy's std to PPO.
        (The NLL itself would shrink the std toward a deterministic expert's zero and end the policy's exploration.)"""
        policy = self.module[DEFAULT_MODULE_ID].unwrapped()
        logits = policy.forward_train({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        if actions.is_floating_point():  # a diagonal Gaussian: the first half of its inputs are the means
            return 0.5 * (logits[..., :actions.shape[-1]] - actions.to(logits.dtype)).pow(2).sum(-1).mean()
        return -policy.get_train_action_dist_cls().from_logits(logits).logp(actions).mean()

    def _reward(self, disc: Discriminator, columns: dict[str, torch.Tensor]) -> torch.Tensor:
        """The policy's reward for each pair of this iteration's batch (called once per update, before GAE).

        With ``disc_input_norm="running"`` the batch's valid pairs first join D's input statistics (and with
        ``disc_replay`` the pairs D's policy half is drawn from); with
        ``reward_norm`` the rewards join the running reward statistics and are divided by their std (and, with
        "standardize", centred on their mean).
        """
        obs, actions, valid = columns[Columns.OBS], columns[Columns.ACTIONS], columns[Columns.LOSS_MASK]
        c = self.config
        if c.disc_input_norm == "running":
            disc.update_policy_stats(obs[valid], actions[valid])
        self.policy_replay.append((obs[valid], actions[valid]))
        reward = objective.gail_reward(disc.logits(obs, actions), c.reward)
        if c.reward_norm == "none":
            return reward
        self.metrics.log_value((DISC_ID, "raw_reward_mean"), reward[valid].mean().item(), window=1)
        stats = disc.reward_stats
        stats.update(reward[valid].unsqueeze(-1))
        if c.reward_norm == "standardize":
            reward = reward - stats.mean
        return reward / stats.std

    def _advantages(self, rl_module, columns: dict[str, torch.Tensor]) -> torch.Tensor:
        """The policy's advantages unstandardized (``advantage_norm``): GAE's value targets minus the values the
        policy's value function gave them (what RLlib standardized), divided, with "running", by the running std of
        all raw advantages so far."""
        values = rl_module[DEFAULT_MODULE_ID].unwrapped().compute_values(columns)
        raw = columns[Postprocessing.VALUE_TARGETS] - values
        if self.config.advantage_norm == "none":
            return raw
        valid = columns.get(Columns.LOSS_MASK, torch.ones_like(raw, dtype=torch.bool))
        stats = rl_module[DISC_ID].unwrapped().advantage_stats
        stats.update(raw[valid].unsqueeze(-1))
        return raw / stats.std
