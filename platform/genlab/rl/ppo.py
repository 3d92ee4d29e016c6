"""``make_ppo_config``: a ``PPOConfig`` (or a subclass such as ``GAILConfig``) from typed PPO hyperparameters.

By default sampling runs in the driver process (``num_env_runners=0``) on one SYNC vector env of ``num_envs``
copies, learning in one local learner: the fastest layout measured on 2 CPUs (async vectorization and remote runners
cost more than they bring there). A run's :class:`genlab.context.ScaleContext` spreads it out (:func:`apply_scale`):
remote env runners of ``num_envs`` copies each, remote learners that share every batch, evaluation runners.
Actions: ``normalize_actions=True`` makes the RLModule act in [-1, 1] for bounded Box spaces; RLlib rescales
them to the env's bounds before ``env.step`` (``genlab.rl.evaluation.to_env_actions`` mirrors it).
Initial policy: RLlib's default module, or, when ``ppo.log_std_init`` / ``ppo.policy_init_scale`` ask for another
start, :class:`PPOModule` (the same networks, with the policy's output layer set as asked).
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import torch
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from genlab import envs  # genlab's env ids: the env runner makes the env in this process
from genlab.context import ScaleContext
from genlab.rl.hparams import PPOHparams

envs.quiet_mujoco()  # MuJoCo envs are made in this process: their warnings go to Python, not a file

POLICY_INIT = "genlab_policy_init"
"""model_config key of :class:`PPOModule`'s settings: {"scale": float, "log_std_init": float | None}."""


class PPOModule(DefaultPPOTorchRLModule):
    """RLlib's default PPO module whose policy starts as ``model_config[POLICY_INIT]`` says.

    ``scale`` multiplies the initial weights and biases of the policy's output layer (the action means or logits):
    a small scale starts every state near the same action, which PPO then moves only where the advantages say
    (Andrychowicz et al. 2021, "What matters in on-policy RL", found 0.01 among the choices that matter most).
    ``log_std_init`` (Gaussian policies) starts every state at the same log std: with RLlib's default each state's
    log std is a random output near 0, i.e. a std of 1 in the policy's [-1, 1] action units, half the action range.
    """

    def setup(self) -> None:
        super().setup()
        init = self.model_config.get(POLICY_INIT)
        if init:
            init_policy_head(self.pi, self.action_space, scale=init["scale"], log_std_init=init["log_std_init"])


@torch.no_grad()
def init_policy_head(head: torch.nn.Module, action_space: gym.Space, *, scale: float,
                     log_std_init: float | None) -> None:
    """Scale the policy output layer's initial means (or logits); set every state's initial log std (Box)."""
    out = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
    free_log_std = isinstance(getattr(head, "log_std", None), torch.nn.Parameter)
    means = out.out_features // 2 if isinstance(action_space, gym.spaces.Box) and not free_log_std else None
    out.weight[:means].mul_(scale)
    out.bias[:means].mul_(scale)
    if log_std_init is None or not isinstance(action_space, gym.spaces.Box):
        return
    if free_log_std:
        head.log_std.fill_(log_std_init)
    else:  # the second half of the outputs are the log stds: constant at first, learnable per state
        out.weight[means:].zero_()
        out.bias[means:].fill_(log_std_init)


def make_ppo_config(env_id: str, ppo: PPOHparams | None = None, *, num_envs: int = 16, seed: int = 0,
                    iterations: int | None = None, config_cls: type[PPOConfig] = PPOConfig,
                    scale: ScaleContext | None = None) -> PPOConfig:
    """A ``config_cls`` for ``env_id`` with the settings of ``ppo`` (defaults: ``PPOHparams()``), laid out over Ray
    processes as ``scale`` says (default: all in this process).

    ``iterations`` is the run's budget, needed when ``ppo.lr_decay`` decays lr to 0 over it. With ``scale.learners``
    above 1, each learner takes ``1/learners`` of ``ppo.train_batch_size`` and of ``ppo.minibatch_size`` (their
    gradients are averaged), so an iteration samples and learns from as many env steps, in as many gradient steps of
    the same size, as with one learner.
    """
    ppo = ppo or PPOHparams()
    share = max(1, (scale or ScaleContext()).learners)
    if ppo.train_batch_size % share or ppo.minibatch_size % share:
        raise ValueError(f"{share} learners cannot share train_batch_size {ppo.train_batch_size} and minibatch_size "
                         f"{ppo.minibatch_size} evenly")
    lr: float | list = ppo.lr
    if ppo.lr_decay:
        if not iterations:
            raise ValueError("ppo.lr_decay needs the run's number of iterations to decay over")
        lr = [[0, ppo.lr], [iterations * ppo.train_batch_size, 0.0]]  # piecewise linear over env steps
    config = (
        config_cls()
        .environment(env_id, normalize_actions=True, clip_actions=False)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=num_envs,
                     gym_env_vectorize_mode=gym.VectorizeMode.SYNC)
        .training(
            lr=lr,
            gamma=ppo.gamma,
            lambda_=ppo.lambda_,
            train_batch_size_per_learner=ppo.train_batch_size // share,
            minibatch_size=ppo.minibatch_size // share,
            num_epochs=ppo.num_epochs,
            entropy_coeff=ppo.entropy_coeff,
            clip_param=ppo.clip_param,
            vf_clip_param=float("inf") if ppo.vf_clip_param is None else ppo.vf_clip_param,
            vf_loss_coeff=ppo.vf_loss_coeff,
            use_kl_loss=ppo.use_kl_loss,
            kl_coeff=ppo.kl_coeff,
            kl_target=ppo.kl_target,
            grad_clip=ppo.grad_clip,
            grad_clip_by="global_norm",
        )
        .rl_module(**_module(ppo))
        .debugging(seed=seed)
    )
    return apply_scale(config, scale) if scale is not None else config


def apply_scale(config: AlgorithmConfig, scale: ScaleContext, *, samples: bool = True) -> AlgorithmConfig:
    """``config`` with the run's layout: ``num_cpus_for_main_process`` (the trial's own CPUs), the learners (remote
    ones, or the local one with its GPU) and, for a method that ``samples`` an env, the remote env runners and
    evaluation runners. With the defaults the config asks for what it always did: one bundle of the trial's CPUs.

    The local learner (``learners`` 0) runs in the trial's process: its CPUs are the trial's, so RLlib's request
    (``Algorithm.default_resource_request``: ``max(num_cpus_per_learner, num_cpus_for_main_process)``) holds exactly
    those. Evaluation runners play greedy episodes only (``genlab.runners.rl``): one env copy each.
    """
    config.resources(num_cpus_for_main_process=scale.main_cpus)
    config.learners(num_learners=scale.learners,
                    num_cpus_per_learner=scale.cpus_per_learner if scale.learners else scale.main_cpus,
                    num_gpus_per_learner=scale.gpus_per_learner)
    if samples:
        config.env_runners(num_env_runners=scale.env_runners, num_cpus_per_env_runner=scale.cpus_per_env_runner)
        if scale.evaluation_runners:
            config.evaluation(evaluation_num_env_runners=scale.evaluation_runners, evaluation_interval=None,
                              evaluation_config=AlgorithmConfig.overrides(num_envs_per_env_runner=1, explore=False))
    return config


def _module(ppo: PPOHparams) -> dict:
    """``rl_module()`` arguments: RLlib's default module, or :class:`PPOModule` for another initial policy."""
    model = DefaultModelConfig(fcnet_hiddens=list(ppo.hiddens), fcnet_activation=ppo.activation,
                               vf_share_layers=ppo.vf_share_layers)
    if ppo.log_std_init is None and ppo.policy_init_scale == 1.0:
        return {"model_config": model}
    return {"rl_module_spec": RLModuleSpec(module_class=PPOModule),
            "model_config": {**dataclasses.asdict(model),
                             POLICY_INIT: {"scale": ppo.policy_init_scale, "log_std_init": ppo.log_std_init}}}
