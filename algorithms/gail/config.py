"""Hyperparameters of GAIL (Ho & Ermon 2016, arXiv 1606.03476). Imports pydantic only.

The policy step is PPO, whose settings are the run spec's ``ppo:`` section (``genlab.rl.hparams.PPOHparams``);
the paper's causal-entropy weight λ is ``ppo.entropy_coeff``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt

from genlab.hparams import Hparams
from genlab.rl.hparams import PPO_METRICS

DISC_ID = "disc"
"""Module id of the discriminator in the learner's MultiRLModule, and the namespace of its metrics."""
RewardForm = Literal["neg_log_1m_d", "log_d"]
"""The surrogate rewards of ``algorithms.gail.objective.REWARDS``."""


class GAILHparams(Hparams):
    metrics: ClassVar[tuple[str, ...]] = (
        f"{DISC_ID}/loss", f"{DISC_ID}/expert_acc", f"{DISC_ID}/policy_acc", f"{DISC_ID}/expert_prob",
        f"{DISC_ID}/policy_prob", f"{DISC_ID}/reward_mean", f"{DISC_ID}/grad_penalty") + PPO_METRICS

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
    reward: RewardForm = "neg_log_1m_d"
    """Surrogate reward: the paper's −log(1−D(s,a)) (always > 0) or log D(s,a) (always < 0)."""
    freeze_discriminator: bool = False
    """Ablation: D keeps its random initialisation and is never trained (rewards still come from it)."""

    def check_run(self, run) -> list[str]:
        minibatches = run.ppo.minibatches_per_iteration()
        if self.disc_steps > minibatches:
            return [f"hparams.disc_steps: {self.disc_steps} is more than the {minibatches} PPO minibatches of an "
                    "iteration (ppo.num_epochs × ppo.train_batch_size / ppo.minibatch_size), which bound D's steps; "
                    "lower disc_steps or raise ppo.num_epochs"]
        return []
