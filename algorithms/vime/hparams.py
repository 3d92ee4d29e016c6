"""Hyperparameters of VIME (Houthooft et al. 2016, arXiv 1605.09674). Imports pydantic only (and gymnasium to
check the run's env's spaces).

The policy step is PPO (the paper's is TRPO), whose settings are the run spec's ``ppo:`` section
(``genlab.rl.hparams.PPOHparams``). Defaults follow the reference code (openai/vime) where it fits PPO.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from genlab.context import EnvContext, RunContext
from genlab.hparams import Hparams
from genlab.rl.hparams import PPO_METRICS

BNN_ID = "bnn"
"""Module id of the Bayesian dynamics model in the learner's MultiRLModule, and the namespace of its metrics."""
INTRINSIC = "intrinsic"
"""Namespace of the exploration bonus's metrics."""
EXPLORE = "explore"
"""Namespace of what exploration found: whether (``reward_found``, 0/1; its mean over seeds is the fraction of seeds
that collected reward) and how often (``rewarded_steps``) the env paid anything on the transitions sampled so far."""
IGMethod = Literal["second_order", "explicit"]
"""How the information gain of a transition is computed (``algorithms.vime.objective``)."""


class VIMEHparams(Hparams):
    metrics: ClassVar[tuple[str, ...]] = (
        f"{INTRINSIC}/bonus_mean", f"{INTRINSIC}/ig_mean", f"{INTRINSIC}/ig_median", f"{INTRINSIC}/ratio",
        f"{INTRINSIC}/eta", f"{BNN_ID}/loss", f"{BNN_ID}/nll", f"{BNN_ID}/kl", f"{BNN_ID}/reward_mean",
        f"{EXPLORE}/reward_found", f"{EXPLORE}/rewarded_steps",
    ) + PPO_METRICS
    progress: ClassVar[tuple[str, ...]] = (f"{INTRINSIC}/bonus_mean", f"{EXPLORE}/reward_found")

    eta: NonNegativeFloat = 1e-4
    """Weight η of the bonus: r + η · IG / (running median of IG, or mean: ``ig_normalizer``); 0 = plain PPO (the BNN
    still trains)."""
    eta_decay: Annotated[float, Field(gt=0, le=1)] = 1.0
    """η is multiplied by this after every iteration (openai/vime's eta_discount); 1 = constant."""
    eta_decay_after_reward: Annotated[float, Field(ge=0, le=1)] = 1.0
    """Once the env has paid anything (``explore/reward_found``), η is also multiplied by this after every
    iteration, from the iteration after the first rewarded transition: explore until reward is found, then let the
    env's reward lead. 1 = the paper's bonus, which does not care whether reward was found; 0 = no bonus after it."""
    center_bonus: bool = False
    """Subtract the batch's mean bonus, so that a transition earns only for more information than the batch's
    average and a longer episode earns nothing by being longer (the paper's bonus is positive on every step). A
    step of average novelty then costs a little: on a task whose episodes end by failing (a falling Hopper) that
    is a push to fail. On sparse MountainCar it did not make VIME exploit the goal it found (docs/vime.md)."""
    bonus_cap: PositiveFloat | None = None
    """On a batch on which the env paid anything, scale the bonus down (never up) so that Σ|bonus| is at most
    ``bonus_cap`` × Σ|env reward| of that batch: full exploration until the env pays, then the env's reward leads
    wherever it is found. None = the paper's bonus, the same weight whatever the env pays. On sparse MountainCar it
    did not make VIME exploit the goal it found (docs/vime.md)."""
    bnn_hiddens: Annotated[list[PositiveInt], Field(min_length=1)] = [32]
    """Widths of the dynamics BNN's ReLU hidden layers (paper: one layer of 32)."""
    prior_std: PositiveFloat = 0.5
    """Std of the factorized Gaussian prior p(θ) = N(0, prior_std²) (paper: 0.5)."""
    init_std: PositiveFloat = 0.05
    """σ of every weight of q(θ; φ) at the start. openai/vime starts at prior_std, but with the few BNN steps of a
    PPO iteration a BNN that starts that noisy barely fits (tests/test_vime.py measures both)."""
    likelihood_std: PositiveFloat = 5.0
    """Std of the Gaussian likelihood p(s'|s, a; θ) on the standardized targets (rllab's default 5)."""
    bnn_lr: PositiveFloat = 1e-3
    """Adam learning rate of the BNN's variational parameters φ = (μ, ρ)."""
    bnn_updates: PositiveInt = 20
    """BNN gradient steps per training iteration (taken during the first PPO minibatches of the iteration)."""
    bnn_batch_size: PositiveInt = 256
    """Transitions drawn from the replay pool for each BNN step."""
    bnn_samples: PositiveInt = 10
    """Monte Carlo draws of θ ~ q(θ; φ) in the ELBO and in the information gain (openai/vime: 10)."""
    replay_pool_size: PositiveInt = 100_000
    """Most recent (s, a, s') transitions the BNN trains on (a FIFO pool; not checkpointed)."""
    ig_method: IGMethod = "second_order"
    """`second_order`: the paper's closed form ½λ²∇ᵀH⁻¹∇ for every transition at once; `explicit`: take the step
    and compute the KL exactly, one transition at a time (slow; for checking)."""
    ig_step_size: PositiveFloat = 0.01
    """Step size λ of the one-step posterior update whose KL is the information gain (cancels in the
    normalization for `second_order`)."""
    normalize_window: PositiveInt = 10
    """IG is divided by the mean of the per-iteration IG medians (or means) of this many last iterations
    (openai/vime)."""
    ig_normalizer: Literal["median", "mean"] = "median"
    """Which per-iteration statistic of IG the bonus is divided by. `median` (openai/vime): once the policy repeats
    what the BNN has learned, most transitions carry almost no information, the median collapses, and any
    deviation earns a bonus orders of magnitude above the env's reward. `mean`: the bonus averages η per step
    whatever the policy does (the outliers are in the mean), so η sets how much exploration is worth."""

    def check(self, ctx: RunContext) -> list[str]:
        problems = []
        minibatches = ctx.ppo.minibatches_per_iteration()
        if self.bnn_updates > minibatches:
            problems.append(
                f"hparams.bnn_updates: {self.bnn_updates} is more than the {minibatches} PPO minibatches of an "
                "iteration (ppo.num_epochs × ppo.train_batch_size / ppo.minibatch_size), which bound the BNN's "
                "steps; lower bnn_updates or raise ppo.num_epochs")
        return problems + _check_env(ctx.env)


def _check_env(env: EnvContext) -> list[str]:
    """VIME models p(s'|s, a) with an MLP: a flat Box observation and a Box or Discrete action."""
    import gymnasium as gym

    env_id, (obs_space, act_space) = env.id, env.spaces
    problems = []
    if not isinstance(obs_space, gym.spaces.Box):
        problems.append(f"env.id: {env_id} has a {type(obs_space).__name__} observation space; VIME's dynamics model "
                        "needs a Box (wrap the env, e.g. with gymnasium.wrappers.FlattenObservation)")
    if not isinstance(act_space, (gym.spaces.Box, gym.spaces.Discrete)):
        problems.append(f"env.id: {env_id} has a {type(act_space).__name__} action space; VIME's dynamics model "
                        "takes a Box or Discrete action")
    return problems
