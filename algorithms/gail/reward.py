"""GAIL's surrogate reward from the discriminator's logit (pure torch)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

RewardForm = Literal["neg_log_1m_d", "log_d"]


def gail_reward(logits: torch.Tensor, form: RewardForm) -> torch.Tensor:
    """Reward of each (s, a) from D's logit, where D(s, a) = sigmoid(logit) = P[(s, a) is the expert's].

    The paper (Ho & Ermon 2016, Section 5 and Algorithm 1) writes D for the probability of the *policy*,
    D_paper = 1 − D, fits D_paper by max E_π[log D_paper] + E_πE[log(1 − D_paper)] and takes a policy step
    with the cost log D_paper(s, a). In terms of our D:

    - ``"neg_log_1m_d"``: r = −log(1 − D(s, a)) = softplus(logit)   (minus the paper's cost);
    - ``"log_d"``:        r =  log D(s, a)      = −softplus(−logit)  (the non-saturating GAN variant).

    Both increase with the logit. The sign is a bias on episode length (Kostrikov et al. 2019):
    −log(1 − D) > 0 everywhere, so every step pays and the policy is paid for surviving (helps
    Hopper-like tasks that end on falling); log D < 0 everywhere, so every step costs and the policy is
    paid for ending the episode early (helps tasks whose goal ends the episode).
    """
    if form == "neg_log_1m_d":
        return F.softplus(logits)
    if form == "log_d":
        return -F.softplus(-logits)
    raise ValueError(f"reward form {form!r} is not one of 'neg_log_1m_d', 'log_d'")
