"""Behavior cloning with RLlib's ``BC`` on the demonstrations ``genlab expert`` recorded.

:class:`BCRunConfig` is RLlib's ``BCConfig`` with the registry's RL contract, ``from_context(hparams, ctx)``. BC
reads the demonstrations through RLlib's offline data path (Ray Data), with the settings that keep it from
deadlocking on a machine with few CPUs (Ray Data's defaults ask for more CPUs than there are and wait forever).
"""

from __future__ import annotations

from ray.rllib.algorithms.bc import BCConfig

from algorithms.bc.hparams import BCHparams
from genlab.context import RunContext
from genlab.rl.demos import module_space_demos
from genlab.rl.ppo import apply_scale


class BCRunConfig(BCConfig):
    @classmethod
    def from_context(cls, hp: BCHparams, ctx: RunContext) -> BCRunConfig:
        """The config that trains a run: the env (its spaces, and genlab's evaluation rollouts) and the
        demonstrations, written where the policy acts (``ctx.workdir``); its one local learner on a GPU when
        ``ctx.scale.gpus_per_learner`` says so (the run spec refuses env runners and remote learners for BC)."""
        demos = module_space_demos(ctx.demos.path, ctx.env.id, ctx.demos.num_trajectories, ctx.workdir)
        obs_space, act_space = ctx.env.spaces
        config = (
            cls()
            # The env gives spaces (and genlab's evaluation rollouts); BC learns from the demonstrations only.
            .environment(ctx.env.id, observation_space=obs_space, action_space=act_space, normalize_actions=True)
            .debugging(seed=ctx.seed)
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
        return apply_scale(config, ctx.scale, samples=False)
