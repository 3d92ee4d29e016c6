"""genlab's own gymnasium environments: the sparse-reward tasks of VIME (Houthooft et al. 2016) and dense controls.

Registered with gymnasium when this module is imported, so that spec validation (``genlab.specs``) knows the ids
before Ray starts and every process that makes an env (the driver's env runner, evaluation rollouts) can make them:
``genlab.specs``, ``genlab.rl.ppo`` and ``genlab.rl.evaluation`` import it. Imports gymnasium only; dm_control and
shimmy are imported when a dm_control task is made.

- ``genlab/SparseMountainCar-v0``: gymnasium's continuous MountainCar physics, reward 1 on the step that reaches
  the goal (which ends the episode) and 0 otherwise: no action cost, so nothing but the goal pays. 500 steps.
- ``genlab/SparseMountainCarWeakEngine-v0``: the same with a weaker engine, ``WEAK_ENGINE_POWER`` (gymnasium's:
  0.0015), like the paper's harder tasks: pushing along the velocity at full force still reaches the goal in ~120 of
  the 500 steps, but a policy must now push with about half the force or more to get there, so the policies PPO's
  Gaussian action noise drifts into stop finding it by chance (pushing along the velocity with 0.3 of the force
  plus N(0, 1) action noise: 16% of episodes reach the goal here, 90% with gymnasium's engine).
- ``genlab/SparseHalfCheetah-v0``: HalfCheetah-v5, reward 1 on every step the torso is past x = 5 and 0 before
  (openai/vime's HalfCheetahEnvX). 500 steps, as in the paper's experiments.
- ``genlab/CartpoleSwingupSparse-v0``: dm_control's ``cartpole/swingup_sparse`` (reward 1 only while the pole is
  upright and the cart centred) through shimmy, observations flattened to one float32 vector. 1000 steps.
- ``genlab/CartpoleSwingup-v0``: the dense ``cartpole/swingup``, the same way (a control).
Dense controls that need no code are gymnasium's own: ``MountainCarContinuous-v0``, ``HalfCheetah-v5``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

SPARSE_MOUNTAIN_CAR = "genlab/SparseMountainCar-v0"
SPARSE_MOUNTAIN_CAR_WEAK = "genlab/SparseMountainCarWeakEngine-v0"
SPARSE_HALF_CHEETAH = "genlab/SparseHalfCheetah-v0"
CARTPOLE_SWINGUP_SPARSE = "genlab/CartpoleSwingupSparse-v0"
CARTPOLE_SWINGUP = "genlab/CartpoleSwingup-v0"
HALF_CHEETAH_GOAL_X = 5.0
"""SparseHalfCheetah pays 1 per step while the torso's x is past this (the cheetah starts at x = 0)."""
WEAK_ENGINE_POWER = 0.0009
"""The engine's power in SparseMountainCarWeakEngine (force per unit action; gymnasium's MountainCar: 0.0015)."""


class GoalReward(gym.Wrapper):
    """Reward 1 on the step that ends the episode at the goal (``terminated``), 0 on every other step."""

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, float(terminated), terminated, truncated, info


class PastXReward(gym.Wrapper):
    """Reward 1 on every step where the MuJoCo body's x position (``info["x_position"]``) is past ``goal_x``."""

    def __init__(self, env: gym.Env, goal_x: float):
        super().__init__(env)
        self.goal_x = goal_x

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, float(info["x_position"] > self.goal_x), terminated, truncated, info


def _sparse_mountain_car(render_mode: str | None = None, power: float | None = None) -> gym.Env:
    from gymnasium.envs.classic_control.continuous_mountain_car import Continuous_MountainCarEnv

    env = Continuous_MountainCarEnv(render_mode=render_mode)
    if power is not None:
        env.power = power  # read by every step(): the force is action * power
    return GoalReward(env)


def _sparse_half_cheetah(render_mode: str | None = None, **kwargs) -> gym.Env:
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

    quiet_mujoco()
    return PastXReward(HalfCheetahEnv(render_mode=render_mode, **kwargs), HALF_CHEETAH_GOAL_X)


def quiet_mujoco() -> None:
    """Send MuJoCo's warnings to Python's ``warnings`` instead of the file MUJOCO_LOG.TXT that its C library appends
    to in the working directory (HalfCheetah's model raises a deprecation warning every time it compiles). Called
    where MuJoCo envs are made: genlab.rl.ppo and genlab.rl.evaluation (every process that samples or evaluates),
    and genlab's own MuJoCo tasks."""
    import warnings

    import mujoco

    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(lambda text: warnings.warn(f"MuJoCo: {text}", RuntimeWarning, stacklevel=2))


def _dm_control(task: str, render_mode: str | None = None) -> gym.Env:
    import shimmy

    quiet_mujoco()
    gym.register_envs(shimmy)  # shimmy registers its dm_control ids on import; this keeps the import used
    env = gym.make(f"dm_control/{task}-v0", render_mode=render_mode)
    # A Dict of float64 arrays -> one float32 vector, which is what RLlib's MLP encoder takes.
    return gym.wrappers.DtypeObservation(gym.wrappers.FlattenObservation(env), np.float32)


def _cartpole_swingup_sparse(render_mode: str | None = None) -> gym.Env:
    return _dm_control("cartpole-swingup_sparse", render_mode)


def _cartpole_swingup(render_mode: str | None = None) -> gym.Env:
    return _dm_control("cartpole-swingup", render_mode)


def register() -> None:
    """Register genlab's env ids with gymnasium (idempotent)."""
    specs = {
        SPARSE_MOUNTAIN_CAR: dict(entry_point=_sparse_mountain_car, max_episode_steps=500),
        SPARSE_MOUNTAIN_CAR_WEAK: dict(entry_point=_sparse_mountain_car, max_episode_steps=500,
                                       kwargs={"power": WEAK_ENGINE_POWER}),
        SPARSE_HALF_CHEETAH: dict(entry_point=_sparse_half_cheetah, max_episode_steps=500),
        CARTPOLE_SWINGUP_SPARSE: dict(entry_point=_cartpole_swingup_sparse),  # dm_control ends episodes itself
        CARTPOLE_SWINGUP: dict(entry_point=_cartpole_swingup),
    }
    for env_id, kwargs in specs.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, **kwargs)


register()
