"""GAIL's math (Ho & Ermon 2016, Algorithm 1): the discriminator's loss and the surrogate reward. Pure torch.

We write D(s, a) = sigmoid(logit) = P[(s, a) is the expert's]; the paper's D is the probability of the *policy*,
D_paper = 1 − D. The paper fits D_paper by max E_π[log D_paper] + E_πE[log(1 − D_paper)], i.e.

    L_D = −E_πE[log D(s, a)] − E_π[log(1 − D(s, a))]                       (logistic loss)

and takes a policy step on the cost log D_paper(s, a) = log(1 − D(s, a)), i.e. the reward −log(1 − D).
"""

from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F

from algorithms.gail.hparams import RewardForm

REWARDS = {
    # r = −log(1 − D) = softplus(logit): minus the paper's cost. Always > 0, so every step pays: the policy is also
    # paid for surviving (helps Hopper-like tasks that end on falling; Kostrikov et al. 2019 on this bias).
    "neg_log_1m_d": F.softplus,
    # r = log D = −softplus(−logit): the non-saturating GAN variant. Always < 0, so every step costs: the policy is
    # paid for ending early (helps tasks whose goal ends the episode).
    "log_d": lambda logits: -F.softplus(-logits),
}
assert set(REWARDS) == set(get_args(RewardForm)), "RewardForm and REWARDS must name the same forms"


def gail_reward(logits: torch.Tensor, form: RewardForm) -> torch.Tensor:
    """The reward of each (s, a) from D's logit; both forms increase with the logit."""
    try:
        return REWARDS[form](logits)
    except KeyError:
        raise ValueError(f"reward form {form!r} is not one of {', '.join(REWARDS)}") from None


def discriminator_loss(expert_logits: torch.Tensor, policy_logits: torch.Tensor) -> torch.Tensor:
    """L_D = −E_E[log D] − E_π[log(1 − D)], from the logits of expert and policy pairs."""
    return (F.binary_cross_entropy_with_logits(expert_logits, torch.ones_like(expert_logits))
            + F.binary_cross_entropy_with_logits(policy_logits, torch.zeros_like(policy_logits)))


def r1_penalty(expert_logits: torch.Tensor, expert_inputs: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): ½·E_E‖∇_x logit(x)‖² on the expert inputs ``x`` (which must require grad);
    keeps D from growing sharp around the expert data."""
    (grad,) = torch.autograd.grad(expert_logits.sum(), expert_inputs, create_graph=True)
    return 0.5 * grad.pow(2).sum(-1).mean()
