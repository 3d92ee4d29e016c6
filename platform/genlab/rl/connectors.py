"""The learner-connector piece through which a learner-only module sets the policy's rewards.

RLlib's own pattern for intrinsic rewards (its curiosity example), made reusable: the piece sits right before
PPO's ``GeneralAdvantageEstimation`` (the batch holds tensors and no advantages yet), asks a learner-only module
for one value per transition, and either *replaces* the env reward with it (GAIL: r = −log(1 − D(s, a))) or
*adds* it (VIME: r + η · bonus). Only the valid rows change (``LOSS_MASK``; the bootstrap rows PPO appends keep
theirs). The env runners never see it, so the episode returns they report stay the environment's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import gymnasium as gym
import torch
from ray.rllib.connectors.common import AddObservationsFromEpisodesToBatch
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.connectors.learner import AddNextObservationsFromEpisodesToTrainBatch, GeneralAdvantageEstimation
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.evaluation.postprocessing import Postprocessing

from genlab import ray_compat

AdvantageFn = Callable[[RLModule, dict[str, torch.Tensor]], torch.Tensor]
"""(the learner's MultiRLModule, the policy's batch with GAE's ADVANTAGES and VALUE_TARGETS) -> its advantages."""
RewardFn = Callable[[RLModule, dict[str, torch.Tensor]], torch.Tensor]
"""(learner-only module, its batch: OBS, ACTIONS, REWARDS (the env's), LOSS_MASK[, NEXT_OBS]) -> one value per row."""


class ModuleReward(ConnectorV2):
    """Rewrites ``batch[DEFAULT_MODULE_ID][REWARDS]`` from ``reward_fn(module, columns)`` computed without gradients.

    ``mode="replace"``: r ← value; ``mode="add"``: r ← r + value. It hands ``keep(module_id, columns)`` the policy's
    OBS, ACTIONS, env REWARDS, LOSS_MASK and, with ``next_obs=True``, NEXT_OBS: the learner keeps them for the
    module to train on (``genlab.rl.auxiliary``), outside RLlib's minibatches, which would otherwise slice them on
    every PPO minibatch. It logs ``(module_id, "reward_mean")`` (the mean value over the valid rows).
    """

    def __init__(self, input_observation_space: gym.Space | None = None, input_action_space: gym.Space | None = None,
                 *, module_id: str, reward_fn: RewardFn, keep: Callable[[str, dict], None],
                 mode: Literal["replace", "add"] = "replace", next_obs: bool = False, **kwargs):
        super().__init__(input_observation_space, input_action_space, **kwargs)
        if mode not in ("replace", "add"):
            raise ValueError(f"mode must be 'replace' or 'add', got {mode!r}")
        self.module_id, self.reward_fn, self.keep, self.mode, self.next_obs = module_id, reward_fn, keep, mode, next_obs

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None, metrics=None, **kwargs):
        policy = batch[DEFAULT_MODULE_ID]
        env_rewards = policy[Columns.REWARDS]
        mask = policy.get(Columns.LOSS_MASK, torch.ones_like(env_rewards, dtype=torch.bool))
        columns = {Columns.OBS: policy[Columns.OBS], Columns.ACTIONS: policy[Columns.ACTIONS],
                   Columns.REWARDS: env_rewards, Columns.LOSS_MASK: mask}
        if self.next_obs:
            columns[Columns.NEXT_OBS] = policy[Columns.NEXT_OBS]
        with torch.no_grad():
            values = self.reward_fn(rl_module[self.module_id].unwrapped(), columns)
        if values.shape != env_rewards.shape:
            raise ValueError(f"{self.module_id}: reward_fn gave shape {tuple(values.shape)}, the batch's rewards "
                             f"have {tuple(env_rewards.shape)}")
        values = values.to(env_rewards.dtype)
        new = values if self.mode == "replace" else env_rewards + values
        policy[Columns.REWARDS] = torch.where(mask, new, env_rewards)
        self.keep(self.module_id, columns)
        if metrics is not None:
            metrics.log_value((self.module_id, "reward_mean"), values[mask].mean().item(), window=1)
        return batch


def install(learner: Learner, piece: ModuleReward) -> None:
    """Put ``piece`` right before PPO's ``GeneralAdvantageEstimation`` in ``learner``'s pipeline (and, when the
    piece needs NEXT_OBS, RLlib's piece that adds it). Call from ``Learner.build()`` after ``super().build()``."""
    if not learner.config.add_default_connectors_to_learner_pipeline:
        raise ValueError(f"{piece.module_id}: the reward piece goes before PPO's GeneralAdvantageEstimation, one of "
                         "RLlib's default learner connectors: keep add_default_connectors_to_learner_pipeline=True")
    pipeline = ray_compat.learner_connector(learner)
    if piece.next_obs:
        pipeline.insert_after(AddObservationsFromEpisodesToBatch, AddNextObservationsFromEpisodesToTrainBatch())
    pipeline.insert_before(GeneralAdvantageEstimation, piece)
    names = [type(c).__name__ for c in pipeline.connectors]
    # insert_before silently appends when the class is missing: check where the piece went.
    if names[-2:] != [type(piece).__name__, GeneralAdvantageEstimation.__name__]:
        raise RuntimeError(f"the reward piece did not land before GeneralAdvantageEstimation: {names}")


class PolicyAdvantages(ConnectorV2):
    """Right after PPO's ``GeneralAdvantageEstimation``: the policy's ``ADVANTAGES`` <- ``advantage_fn(rl_module,
    policy batch)``, computed without gradients. RLlib's GAE standardizes each batch's advantages to unit variance;
    with this piece a learner can scale them otherwise (GAIL's ``advantage_norm``)."""

    def __init__(self, input_observation_space: gym.Space | None = None, input_action_space: gym.Space | None = None,
                 *, advantage_fn: AdvantageFn, **kwargs):
        super().__init__(input_observation_space, input_action_space, **kwargs)
        self.advantage_fn = advantage_fn

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None, metrics=None, **kwargs):
        policy = batch[DEFAULT_MODULE_ID]
        with torch.no_grad():
            values = self.advantage_fn(rl_module, policy)
        if values.shape != policy[Postprocessing.ADVANTAGES].shape:
            raise ValueError(f"advantage_fn gave shape {tuple(values.shape)}, the batch's advantages have "
                             f"{tuple(policy[Postprocessing.ADVANTAGES].shape)}")
        policy[Postprocessing.ADVANTAGES] = values.to(policy[Postprocessing.ADVANTAGES].dtype)
        return batch


def install_after_gae(learner: Learner, piece: PolicyAdvantages) -> None:
    """Put ``piece`` right after PPO's ``GeneralAdvantageEstimation`` in ``learner``'s pipeline (the last piece).
    Call from ``Learner.build()`` after ``super().build()``."""
    pipeline = ray_compat.learner_connector(learner)
    pipeline.insert_after(GeneralAdvantageEstimation, piece)
    names = [type(c).__name__ for c in pipeline.connectors]
    if names[-2:] != [GeneralAdvantageEstimation.__name__, type(piece).__name__]:
        raise RuntimeError(f"the advantage piece did not land right after GeneralAdvantageEstimation: {names}")
