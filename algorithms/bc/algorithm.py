"""Behavior cloning with RLlib's ``BC`` on the demonstrations ``genlab expert`` recorded.

``build_config(spec, workdir)`` is the RL algorithm contract of the registry: typed spec in, RLlib
``AlgorithmConfig`` out. BC reads the demonstrations through RLlib's offline data path (Ray Data),
with the settings that keep it from deadlocking on a 2-CPU machine (Ray Data's defaults ask for more
CPUs than there are and wait forever).
"""

from __future__ import annotations

from pathlib import Path

from algorithms.bc.config import BCHparams
from genlab.rl.demos import module_space_demos
from genlab.rl.evaluation import env_spaces
from genlab.specs import RunSpec


def build_config(spec: RunSpec, workdir: Path):
    from ray.rllib.algorithms.bc import BCConfig

    hp = BCHparams.model_validate(spec.hparams)
    demos = module_space_demos(spec.demos.path, spec.env.id, spec.demos.num_trajectories, Path(workdir))
    obs_space, act_space = env_spaces(spec.env.id)
    return (
        BCConfig()
        # The env gives spaces (and genlab's evaluation rollouts); BC learns from the demonstrations only.
        .environment(spec.env.id, observation_space=obs_space, action_space=act_space, normalize_actions=True)
        .debugging(seed=spec.seed)
        .rl_module(model_config={"fcnet_hiddens": list(hp.policy_hiddens)})
        .training(lr=hp.lr, train_batch_size_per_learner=hp.train_batch_size)
        .offline_data(
            input_=[str(demos)],
            input_compress_columns=[],  # demos.parquet stores plain columns
            input_read_method_kwargs={"override_num_blocks": 1},
            map_batches_kwargs={"concurrency": 1, "num_cpus": 1},  # the default asks for 2+ CPUs: deadlock
            iter_batches_kwargs={"prefetch_batches": 1},
            dataset_num_iters_per_learner=hp.updates_per_iteration,
        )
    )
