"""Typed PPO hyperparameters, shared by every method built on PPO (GAIL, VIME) and by `genlab expert`.

Imports pydantic only. A run or expert spec carries them as its ``ppo:`` section; per-environment settings live as
data in ``sweeps/ppo/*.yaml``, which a spec names with ``ppo: {base: ../ppo/<file>.yaml}`` instead of copying them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

Fraction = Annotated[float, Field(gt=0, le=1)]
"""A float in (0, 1]."""

PPO_METRICS = ("loss/policy_loss", "loss/vf_loss", "loss/entropy")
"""What the policy's PPO learner reports (``genlab.rl.metrics.from_result``)."""


class PPOHparams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hiddens: list[PositiveInt] = [64, 64]
    """Hidden layer widths of the policy and value MLPs."""
    activation: Literal["tanh", "relu", "silu"] = "tanh"
    """Hidden activation of both MLPs."""
    vf_share_layers: bool = False
    """Share the hidden layers between policy and value function."""
    lr: PositiveFloat = 3e-4
    """Adam learning rate of the policy and value networks."""
    lr_decay: bool = False
    """Decay lr linearly to 0 over the run's budget (budget.epochs iterations of train_batch_size steps)."""
    gamma: Fraction = 0.99
    """Discount factor."""
    lambda_: Fraction = 0.95
    """GAE λ."""
    train_batch_size: PositiveInt = 4000
    """Environment steps per training iteration."""
    minibatch_size: PositiveInt = 500
    """PPO minibatch size."""
    num_epochs: PositiveInt = 6
    """PPO passes over each iteration's batch."""
    entropy_coeff: NonNegativeFloat = 0.0
    """Entropy bonus weight (GAIL's causal-entropy weight λ)."""
    clip_param: PositiveFloat = 0.2
    """PPO policy-ratio clip."""
    vf_clip_param: PositiveFloat | None = None
    """Clip of the squared value error; None = no clip. RLlib's default 10 zeroes the value gradient wherever the
    error exceeds ~3.2, which stalls the critic on returns of hundreds (Pendulum, MuJoCo), hence off by default."""
    vf_loss_coeff: NonNegativeFloat = 1.0
    """Weight of the value loss."""
    use_kl_loss: bool = False
    """Add RLlib's adaptive KL penalty kl_coeff·KL(old‖new) on top of the clipped objective."""
    kl_coeff: NonNegativeFloat = 0.2
    """Initial weight of the KL penalty (with use_kl_loss); RLlib multiplies it by 1.5 after an iteration whose mean
    KL is above 2·kl_target and halves it after one below kl_target/2."""
    kl_target: PositiveFloat = 0.01
    """The mean KL per iteration the penalty's weight adapts toward (with use_kl_loss)."""
    grad_clip: PositiveFloat | None = None
    """Clip the gradient's global norm to this (SB3's PPO: 0.5); None = no clipping (RLlib's default)."""
    policy_init_scale: PositiveFloat = 1.0
    """Multiply the initial weights of the policy's output layer (action means / logits) by this; 0.01 starts every
    state near the same action (Andrychowicz et al. 2021); 1 = RLlib's initialization."""
    log_std_init: float | None = None
    """Gaussian policies: every state's initial log std, in the policy's [-1, 1] action units (-0.7: std 0.5, a
    quarter of the range); None = RLlib's (random outputs near 0, i.e. std ≈ 1)."""

    @model_validator(mode="after")
    def _consistent(self) -> PPOHparams:
        if self.minibatch_size > self.train_batch_size:
            raise ValueError(f"minibatch_size: {self.minibatch_size} is larger than train_batch_size "
                             f"{self.train_batch_size}; lower it or raise train_batch_size")
        return self

    def minibatches_per_iteration(self) -> int:
        return self.num_epochs * (self.train_batch_size // self.minibatch_size)
