"""The semi-supervised GAN objective of Salimans et al. 2016 ("Improved Techniques for Training GANs").

The discriminator is a K-class classifier with logits l_1..l_K. The K+1 trick: a (K+1)-th "fake"
class with its logit fixed at 0, so that

    p(y = k | x)       = exp(l_k) / (Z(x) + 1),    Z(x) = sum_k exp(l_k),
    p(y = K+1 | x)     = 1 / (Z(x) + 1),
    D(x) = 1 - p(y = K+1 | x) = Z(x) / (Z(x) + 1) = sigmoid(l(x)),   l(x) = logsumexp_k l_k(x).

With labeled data (x, y), unlabeled data x ~ p_data and generated samples G(z),

    L_supervised   = -E_{x,y} log p(y | x, y < K+1) = cross-entropy(l(x_lab), y)
    L_unsupervised = -E_{x ~ data} log D(x) - E_{z} log(1 - D(G(z)))
                   = -E_data[l(x)] + E_data[softplus(l(x))] + E_z[softplus(l(G(z)))]
    L_D = L_supervised + w * L_unsupervised

(since log D = l - softplus(l) and log(1 - D) = -softplus(l)). The paper's code halves
L_unsupervised, i.e. uses w = 0.5; w = 0 trains the classifier on the labels alone.

The generator minimises feature matching on f, D's last hidden layer:

    L_G = || E_data f(x) - E_z f(G(z)) ||^2

taken, as in the code, as the mean over features of the squared difference of the batch means (the
code's CIFAR-10/SVHN scripts use the mean absolute difference instead: ``distance="absolute"``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F


def unsupervised_logit(logits: torch.Tensor) -> torch.Tensor:
    """l(x) = logsumexp_k l_k(x), so that D(x) = sigmoid(l(x))."""
    return torch.logsumexp(logits, dim=1)


def real_probability(logits: torch.Tensor) -> torch.Tensor:
    """D(x) = Z(x) / (Z(x) + 1) per example."""
    return torch.sigmoid(unsupervised_logit(logits))


def discriminator_loss(
    logits_lab: torch.Tensor,
    y_lab: torch.Tensor,
    logits_unl: torch.Tensor,
    logits_fake: torch.Tensor,
    unlabeled_weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_supervised + unlabeled_weight * L_unsupervised, L_supervised, L_unsupervised)."""
    sup = F.cross_entropy(logits_lab, y_lab)
    l_unl, l_fake = unsupervised_logit(logits_unl), unsupervised_logit(logits_fake)
    unsup = -l_unl.mean() + F.softplus(l_unl).mean() + F.softplus(l_fake).mean()
    return sup + unlabeled_weight * unsup, sup, unsup


def feature_matching_loss(
    f_real: torch.Tensor, f_fake: torch.Tensor, distance: Literal["squared", "absolute"] = "squared"
) -> torch.Tensor:
    """Mean over features of the squared (or absolute) difference of the batch means of f."""
    diff = f_real.mean(dim=0) - f_fake.mean(dim=0)
    return diff.square().mean() if distance == "squared" else diff.abs().mean()
