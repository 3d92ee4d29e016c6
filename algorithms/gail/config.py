"""Hyperparameters of GAIL (Ho & Ermon 2016, arXiv 1606.03476). Imports pydantic only."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

Fraction = Annotated[float, Field(gt=0, le=1)]
"""A float in (0, 1]."""


class GAILHparams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # --- discriminator
    disc_lr: PositiveFloat = 3e-4
    """Adam learning rate of the discriminator D."""
    disc_steps: PositiveInt = 4
    """D gradient steps per training iteration (taken on the first PPO minibatches of the iteration)."""
    disc_hiddens: list[PositiveInt] = [100, 100]
    """Widths of D's tanh hidden layers (paper: two layers of 100)."""
    disc_minibatch_size: PositiveInt = 500
    """Expert (s, a) pairs drawn per D step; the policy half is the PPO minibatch."""
    grad_penalty: NonNegativeFloat = 0.0
    """Weight γ of the R1 penalty γ/2·E_expert‖∇ logit D‖² on D's standardized input; 0 = off."""
    reward: Literal["neg_log_1m_d", "log_d"] = "neg_log_1m_d"
    """Surrogate reward: the paper's −log(1−D(s,a)) (always > 0) or log D(s,a) (always < 0)."""
    entropy_coeff: NonNegativeFloat = 0.0
    """Causal-entropy weight λ, applied as PPO's entropy bonus."""
    freeze_discriminator: bool = False
    """Ablation: D keeps its random initialisation and is never trained (rewards still come from it)."""

    # --- PPO (the policy step)
    lr: PositiveFloat = 3e-4
    """Adam learning rate of the policy and value networks."""
    lr_decay: bool = False
    """Decay the policy's learning rate linearly to 0 over the run's budget (budget.epochs iterations)."""
    gamma: Fraction = 0.995
    """Discount factor (paper: 0.995)."""
    lambda_: Fraction = 0.97
    """GAE λ (paper: 0.97)."""
    train_batch_size: PositiveInt = 4000
    """Environment steps per training iteration."""
    minibatch_size: PositiveInt = 500
    """PPO minibatch size."""
    num_epochs: PositiveInt = 6
    """PPO passes over each iteration's batch."""
    policy_hiddens: list[PositiveInt] = [100, 100]
    """Widths of the policy's and value function's tanh hidden layers (paper: two layers of 100)."""

    def ppo_overrides(self) -> dict[str, Any]:
        """The PPO knobs (entropy_coeff = λ included) as ``genlab.rl.make_ppo_config`` keyword overrides."""
        return {
            "lr": self.lr,
            "gamma": self.gamma,
            "lambda_": self.lambda_,
            "train_batch_size": self.train_batch_size,
            "minibatch_size": self.minibatch_size,
            "num_epochs": self.num_epochs,
            "hiddens": tuple(self.policy_hiddens),
            "entropy_coeff": self.entropy_coeff,
        }

    @model_validator(mode="after")
    def _consistent(self) -> GAILHparams:
        if self.minibatch_size > self.train_batch_size:
            raise ValueError(
                f"minibatch_size: {self.minibatch_size} is larger than train_batch_size {self.train_batch_size}"
            )
        minibatches = self.num_epochs * self.train_batch_size // self.minibatch_size
        if self.disc_steps > minibatches:
            raise ValueError(
                f"disc_steps: {self.disc_steps} is more than the {minibatches} PPO minibatches of an iteration "
                "(num_epochs × train_batch_size / minibatch_size), which bound D's steps; "
                "lower disc_steps or raise num_epochs"
            )
        return self
