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

The techniques for sample quality (§3 of the paper), each a hyperparameter:

One-sided label smoothing (§3.4) replaces the target 1 of real examples by alpha (e.g. 0.9) and leaves the target 0
of generated ones. In the K+1 model the real/fake decision is D(x) = 1 - p(K+1 | x), so smoothing acts on L_unsup:

    L_unsupervised = E_data[ BCE(D(x), alpha) ] + E_z[ BCE(D(G(z)), 0) ]
                   = -E_data[ alpha log D(x) + (1 - alpha) log(1 - D(x)) ] - E_z log(1 - D(G(z)))
    BCE(D, t) = -t log D - (1 - t) log(1 - D)  (= softplus(l) - t l for D = sigmoid(l))

i.e. the K+1 classifier is asked to put mass 1 - alpha of every unlabeled real example on the fake class. L_sup is
not smoothed: it is the class posterior given that x is real, p(y | x, y < K+1), which the smoothing of the
real/fake target does not touch. alpha = 1 is the unsmoothed loss above.

Label noise (beyond the paper): each example's real/fake target is swapped with probability p (a real example
then has target 0, a generated one alpha).

Generator losses. Feature matching (above) is the paper's loss for semi-supervised learning; for samples the
paper's code trains G adversarially, with the minimax loss of the K+1 model (``train_*_minibatch_discrimination.py``
minimises -softplus(l(G(z)))):

    minimax:         L_G = E_z log(1 - D(G(z))) = -E_z softplus(l(G(z)))
    non-saturating:  L_G = -E_z log D(G(z))     =  E_z softplus(-l(G(z)))

and the total is  w_fm * L_feature_matching + L_adversarial  (either part may be off).

Historical averaging (§3.3) adds  lambda * ||theta - (1/t) sum_{i<t} theta[i]||^2  to each player's loss
(:class:`algorithms.common.gan.HistoricalAverage`). Minibatch discrimination (§3.2), minibatch standard deviation
and virtual batch normalisation (§3.5) are layers: :mod:`algorithms.common.gan`.
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
    logits_lab: torch.Tensor | None,
    y_lab: torch.Tensor | None,
    logits_unl: torch.Tensor,
    logits_fake: torch.Tensor,
    unlabeled_weight: float,
    real_target: float | torch.Tensor = 1.0,
    fake_target: float | torch.Tensor = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_supervised + unlabeled_weight * L_unsupervised, L_supervised, L_unsupervised).

    ``real_target``/``fake_target``: the targets of D(x) for the unlabeled real and the generated examples (a number,
    or one per example): alpha < 1 is one-sided label smoothing, per-example targets carry label noise. Without
    labeled logits (``logits_lab`` None: the paper's "-L" ablation) L_supervised is 0.
    """
    l_unl, l_fake = unsupervised_logit(logits_unl), unsupervised_logit(logits_fake)
    # BCE(sigmoid(l), t) = softplus(l) - t l, summed in the order of the unsmoothed loss above (bit for bit the same)
    unsup = -_mean_of_product(real_target, l_unl) + F.softplus(l_unl).mean() + F.softplus(l_fake).mean()
    unsup = unsup - _mean_of_product(fake_target, l_fake)
    if logits_lab is None:
        sup = torch.zeros((), device=logits_unl.device, dtype=logits_unl.dtype)
        return unlabeled_weight * unsup, sup, unsup
    sup = F.cross_entropy(logits_lab, y_lab)
    return sup + unlabeled_weight * unsup, sup, unsup


def _mean_of_product(t: float | torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """E[t l] for a target per example or one for all."""
    return (t * l).mean() if isinstance(t, torch.Tensor) else t * l.mean()


def real_fake_targets(
    n_real: int, n_fake: int, alpha: float = 1.0, flip_prob: float = 0.0, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """Targets of D(x) for ``n_real`` real and ``n_fake`` generated examples: alpha and 0 (one-sided smoothing),
    each swapped with probability ``flip_prob`` (label noise; draws from torch's global generator)."""
    if flip_prob == 0:
        return alpha, 0.0
    flip_real = torch.rand(n_real, device=device) < flip_prob
    flip_fake = torch.rand(n_fake, device=device) < flip_prob
    real = torch.where(flip_real, 0.0, alpha)
    fake = torch.where(flip_fake, alpha, 0.0)
    return real, fake


def generator_adversarial_loss(logits_fake: torch.Tensor, kind: Literal["minimax", "non_saturating"]) -> torch.Tensor:
    """minimax: E log(1 - D(G(z))) = -E softplus(l); non_saturating: -E log D(G(z)) = E softplus(-l)."""
    l_fake = unsupervised_logit(logits_fake)
    if kind == "minimax":
        return -F.softplus(l_fake).mean()
    if kind == "non_saturating":
        return F.softplus(-l_fake).mean()
    raise ValueError(f"unknown adversarial generator loss {kind!r}")


def feature_matching_loss(
    f_real: torch.Tensor, f_fake: torch.Tensor, distance: Literal["squared", "absolute"] = "squared"
) -> torch.Tensor:
    """Mean over features of the squared (or absolute) difference of the batch means of f."""
    diff = f_real.mean(dim=0) - f_fake.mean(dim=0)
    return diff.square().mean() if distance == "squared" else diff.abs().mean()
