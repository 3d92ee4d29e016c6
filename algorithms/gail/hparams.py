"""Hyperparameters of GAIL (Ho & Ermon 2016, arXiv 1606.03476). Imports pydantic only.

The policy step is PPO, whose settings are the run spec's ``ppo:`` section (``genlab.rl.hparams.PPOHparams``);
the paper's causal-entropy weight λ is ``ppo.entropy_coeff``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from genlab.context import RunContext
from genlab.hparams import Hparams
from genlab.rl.hparams import PPO_METRICS

DISC_ID = "disc"
"""Module id of the discriminator in the learner's MultiRLModule, and the namespace of its metrics."""
BC_LOSS = "loss/bc_loss"
"""Metric: the BC loss (``bc_weight``) of the expert pairs of the policy's last minibatch."""
RewardForm = Literal["neg_log_1m_d", "log_d"]
"""The surrogate rewards of ``algorithms.gail.objective.REWARDS``."""
InputNorm = Literal["expert", "running"]
"""How D standardizes its inputs: by the expert data's statistics, or by running ones of expert and policy pairs."""
AdvantageNorm = Literal["batch", "running", "none"]
"""How the policy's advantages are scaled: per batch to unit variance (RLlib's PPO), by the running std of every raw
advantage so far, or not at all."""
RewardNorm = Literal["none", "scale", "standardize"]
"""What the policy is paid: D's reward as is, divided by its running std, or standardized by its running mean/std."""


class GAILHparams(Hparams):
    metrics: ClassVar[tuple[str, ...]] = (
        f"{DISC_ID}/loss", f"{DISC_ID}/expert_acc", f"{DISC_ID}/policy_acc", f"{DISC_ID}/expert_prob",
        f"{DISC_ID}/policy_prob", f"{DISC_ID}/reward_mean", f"{DISC_ID}/raw_reward_mean",
        f"{DISC_ID}/grad_penalty", f"{DISC_ID}/gate_acc", BC_LOSS) + PPO_METRICS
    progress: ClassVar[tuple[str, ...]] = (f"{DISC_ID}/loss",)

    disc_lr: PositiveFloat = 3e-4
    """Adam learning rate of the discriminator D."""
    disc_lr_decay: bool = False
    """D's lr follows the policy's schedule (with ``ppo.lr_decay``: linearly to 0 over the budget), scaled to start
    at disc_lr; keeps D from outpacing a policy whose steps shrink. Off: D's lr stays at disc_lr."""
    disc_max_acc: float = Field(1.0, gt=0.5, le=1.0)
    """Accuracy gate: before each of its steps D classifies a fresh draw of expert and policy pairs; while its mean
    accuracy (of the two halves) is above this, the step is skipped. 1.0 = never skip."""
    disc_steps: PositiveInt = 4
    """D gradient steps per training iteration (taken on the first PPO minibatches of the iteration)."""
    disc_hiddens: list[PositiveInt] = [100, 100]
    """Widths of D's tanh hidden layers (paper: two layers of 100)."""
    disc_minibatch_size: PositiveInt = 500
    """Expert (s, a) pairs drawn per D step (and policy pairs, with disc_replay)."""
    disc_replay: NonNegativeInt = 0
    """Where D's policy half comes from: 0 = the PPO minibatch it trains on; k >= 1 = disc_minibatch_size pairs
    drawn from the policy's pairs of the last k iterations (1 = this iteration's whole batch, imitation's default)."""
    grad_penalty: NonNegativeFloat = 0.0
    """Weight γ of the R1 penalty γ/2·E_expert‖∇ logit D‖² on D's standardized input; 0 = off."""
    reward: RewardForm = "neg_log_1m_d"
    """Surrogate reward: the paper's −log(1−D(s,a)) (always > 0) or log D(s,a) (always < 0)."""
    disc_input_norm: InputNorm = "expert"
    """D's input standardization: "expert" (the demonstrations' mean/std) or "running" (an even mix of the expert's
    and every policy pair seen so far, as imitation's RunningNorm; keeps far-off policy pairs inside D's range)."""
    reward_norm: RewardNorm = "none"
    """Normalize the surrogate reward by running statistics of every reward given so far (imitation's
    NormalizedRewardNet): "scale" divides by the std (keeps the sign, hence -log(1-D)'s survival bonus on tasks that
    end early), "standardize" also subtracts the mean (only safe with a fixed episode length)."""
    advantage_norm: AdvantageNorm = "batch"
    """"batch": RLlib's PPO standardizes each batch's GAE advantages, so the policy takes full-size steps even when D
    is at chance and its rewards are noise; "running": the raw advantages divided by the running std of all raw
    advantages so far (the early, informative batches' scale: a batch of near-equal rewards moves the policy little);
    "none": raw advantages."""
    bc_weight: NonNegativeFloat = 0.0
    """Weight β of a behavior-cloning term on the policy (GAIL + BC, Jena et al. 2020): each PPO minibatch's loss
    adds β × the BC loss of as many expert (obs, action) pairs (continuous actions: half the squared distance of the
    policy's mean action to the expert's; discrete: their negative log-likelihood). GAIL's reward matches where the
    policy goes, the BC term how it acts where the expert was. 0 = off (the paper's GAIL)."""
    freeze_discriminator: bool = False
    """Ablation: D keeps its random initialisation and is never trained (rewards still come from it)."""

    def unreported(self) -> dict[str, str]:
        return {metric: setting for metric, off, setting in (
            (f"{DISC_ID}/grad_penalty", self.grad_penalty == 0, "hparams.grad_penalty > 0"),
            (f"{DISC_ID}/gate_acc", self.disc_max_acc >= 1.0, "hparams.disc_max_acc < 1"),
            (f"{DISC_ID}/raw_reward_mean", self.reward_norm == "none", "hparams.reward_norm: scale or standardize"),
            (BC_LOSS, self.bc_weight == 0, "hparams.bc_weight > 0"),
        ) if off}

    def check(self, ctx: RunContext) -> list[str]:
        minibatches = ctx.ppo.minibatches_per_iteration()
        if self.disc_steps > minibatches:
            return [f"hparams.disc_steps: {self.disc_steps} is more than the {minibatches} PPO minibatches of an "
                    "iteration (ppo.num_epochs × ppo.train_batch_size / ppo.minibatch_size), which bound D's steps; "
                    "lower disc_steps or raise ppo.num_epochs"]
        return []
