"""The InfoGAN objective of Chen et al. 2016 ("InfoGAN: Interpretable Representation Learning by Information
Maximizing Generative Adversarial Nets", arXiv 1606.03657).

The generator's input is split into incompressible noise z and latent codes c = (c_1, ..., c_L) with a factored
prior p(c) = prod_i p(c_i). InfoGAN asks that the codes stay readable in the images, by adding to the GAN game the
mutual information I(c; G(z, c)) through a variational lower bound L_I:

    min_{G,Q} max_D  V_I(D, G, Q) = V(D, G) - λ·L_I(G, Q)                                         (paper eq. 6)

    V(D, G)   = E_{x ~ data}[log D(x)] + E_{z,c}[log(1 - D(G(z, c)))]                            (eq. 1)
    L_I(G, Q) = E_{c ~ p(c), x ~ G(z, c)}[log Q(c | x)] + H(c)  <=  I(c; G(z, c))                (eq. 4-5)

The bound is tight when Q(c | x) is the true posterior P(c | x). Q is a factored distribution computed by a head
that shares D's trunk, so L_I splits into one term per code, each with its own entropy:

    categorical c_i in {1..K}:  Q(c_i | x) = softmax(logits_i(x))[c_i]         H(c_i) = ln K
    continuous c_j ~ U[-1, 1]:  Q(c_j | x) = N(c_j; μ_j(x), σ_j(x)^2)          H(c_j) = ln 2  (differential)

(σ_j learned, or fixed as in the reference code's option.) For a categorical code 0 <= L_I <= ln K when Q is no
worse than chance: a Q that reads the code perfectly gives H(c), a uniform Q gives 0. A continuous code's bound has
no such ceiling (the differential entropy is not an upper bound on the information), so the paper weighs the two
types differently: -λ·L_I = -λ_cat·L_I,cat - λ_cont·L_I,cont, with λ_cat = 1 and a smaller λ_cont.

As trained (the non-saturating generator loss of the paper's code, D(x) = sigmoid(l(x)), so that
-log D = softplus(-l) and -log(1 - D) = softplus(l)):

    L_D = -E_data log D(x) - E_{z,c} log(1 - D(G(z, c))) - λ·L_I       D's trunk and head, Q's head
    L_G = -E_{z,c} log D(G(z, c)) - λ·L_I                               G (the baseline drops G's λ·L_I)

The reference code estimates H(c) of its uniform continuous codes by the cross-entropy under N(0, 1); here it is
the exact ln 2, so the reported continuous bound is the bound of eq. 5.

Evaluation: the categorical code that Q reads from real test images is compared with the true classes under the
best one-to-one matching of code values to classes (Hungarian algorithm), the paper's "5% error on MNIST".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
"""A learned log σ is clamped to this range (σ in [0.0067, 7.4]) so log Q stays finite."""


def discriminator_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """-V(D, G) for D: -E log D(x) - E log(1 - D(G(z, c))), with D = sigmoid(logit)."""
    return F.softplus(-logit_real).mean() + F.softplus(logit_fake).mean()


def generator_loss(logit_fake: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss -E log D(G(z, c))."""
    return F.softplus(-logit_fake).mean()


def categorical_log_q(logits: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """log Q(c | x) per example for a K-way code: logits (N, K), c (N,) int64 values in 0..K-1."""
    return F.log_softmax(logits, dim=1).gather(1, c[:, None]).squeeze(1)


def gaussian_log_q(mean: torch.Tensor, log_std: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """log N(c; mean, exp(log_std)^2) per example and code: all (N, n_cont)."""
    return -0.5 * math.log(2 * math.pi) - log_std - 0.5 * ((c - mean) * torch.exp(-log_std)).square()


def categorical_entropy(k: int) -> float:
    """H of the uniform distribution on K values: ln K."""
    return math.log(k)


UNIFORM_ENTROPY = math.log(2.0)
"""Differential entropy of U[-1, 1]: ln 2."""


@dataclass
class Latent:
    """A draw of G's input: noise z (N, noise), categorical codes (N, n_cat) int64, continuous codes (N, n_cont)."""

    z: torch.Tensor
    cat: torch.Tensor
    cont: torch.Tensor


@dataclass
class MIBound:
    """L_I per code type (batch means) and the entropies H(c) it is bounded by (categorical only)."""

    cat: torch.Tensor
    cont: torch.Tensor

    def weighted(self, lambda_cat: float, lambda_cont: float) -> torch.Tensor:
        """λ·L_I = λ_cat·L_I,cat + λ_cont·L_I,cont."""
        return lambda_cat * self.cat + lambda_cont * self.cont


class LatentPrior:
    """p(z, c): the noise and the codes, how they enter G, how Q's output is read, and L_I.

    G's input is ``[z, one_hot(c_1), ..., one_hot(c_L), c_cont]``. Q's output is ``[logits_1, ..., logits_L,
    μ_1..μ_n, (log σ_1..log σ_n if learned)]``.
    """

    def __init__(self, categorical: list[int], continuous: int, noise: int, noise_dist: str = "uniform",
                 learned_std: bool = True, fixed_std: float = 1.0):
        self.categorical, self.continuous, self.noise = list(categorical), continuous, noise
        self.noise_dist, self.learned_std, self.fixed_std = noise_dist, learned_std, fixed_std

    @property
    def input_dim(self) -> int:
        return self.noise + sum(self.categorical) + self.continuous

    @property
    def q_dim(self) -> int:
        return sum(self.categorical) + self.continuous * (2 if self.learned_std else 1)

    @property
    def entropy_cat(self) -> float:
        return sum(categorical_entropy(k) for k in self.categorical)

    @property
    def entropy_cont(self) -> float:
        return self.continuous * UNIFORM_ENTROPY

    def sample(self, n: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Latent:
        """n draws from the prior (on the CPU with ``generator`` when one is given, then moved to ``device``)."""
        dev = "cpu" if generator is not None else device
        if self.noise_dist == "uniform":
            z = torch.rand(n, self.noise, device=dev, generator=generator) * 2 - 1
        else:
            z = torch.randn(n, self.noise, device=dev, generator=generator)
        cat = torch.stack([torch.randint(k, (n,), device=dev, generator=generator) for k in self.categorical], 1) \
            if self.categorical else torch.zeros(n, 0, dtype=torch.long, device=dev)
        cont = torch.rand(n, self.continuous, device=dev, generator=generator) * 2 - 1
        return Latent(z.to(device), cat.to(device), cont.to(device))

    def generator_input(self, latent: Latent) -> torch.Tensor:
        one_hots = [F.one_hot(latent.cat[:, i], k).float() for i, k in enumerate(self.categorical)]
        return torch.cat([latent.z, *one_hots, latent.cont], dim=1)

    def read_q(self, q: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Q's output -> (logits of each categorical code, μ (N, n_cont), log σ (N, n_cont))."""
        k, n = sum(self.categorical), self.continuous
        logits = list(q[:, :k].split(self.categorical, dim=1)) if self.categorical else []
        mean = q[:, k : k + n]
        if self.learned_std:
            log_std = q[:, k + n : k + 2 * n].clamp(LOG_STD_MIN, LOG_STD_MAX)
        else:
            log_std = torch.full_like(mean, math.log(self.fixed_std))
        return logits, mean, log_std

    def mi_bound(self, q: torch.Tensor, latent: Latent) -> MIBound:
        """L_I per code type, E[log Q(c | x)] + H(c), as batch means summed over the codes of the type."""
        logits, mean, log_std = self.read_q(q)
        zero = q.new_zeros(())
        log_q_cat = sum((categorical_log_q(lg, latent.cat[:, i]) for i, lg in enumerate(logits)), zero)
        log_q_cont = gaussian_log_q(mean, log_std, latent.cont).sum(1) if self.continuous else zero
        return MIBound(cat=torch.mean(log_q_cat) + self.entropy_cat, cont=torch.mean(log_q_cont) + self.entropy_cont)


def hungarian_matching(pred: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> dict[int, int]:
    """The one-to-one matching of cluster ids ``pred`` to ``labels`` that gets the most of them right (id -> label).

    The confusion counts are matched by the Hungarian algorithm (scipy's linear_sum_assignment); with more ids than
    labels (or the reverse) some are left unmatched.
    """
    from scipy.optimize import linear_sum_assignment

    pred, labels = np.asarray(pred, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    if len(pred) != len(labels) or len(pred) == 0:
        raise ValueError(f"need as many predictions as labels, at least one (got {len(pred)} and {len(labels)})")
    counts = np.zeros((pred.max() + 1, labels.max() + 1), dtype=np.int64)
    np.add.at(counts, (pred, labels), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return dict(zip(rows.tolist(), cols.tolist()))


def hungarian_labels(pred: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> np.ndarray:
    """``pred``'s cluster ids replaced by the labels :func:`hungarian_matching` gives them (-1 where an id is left
    unmatched)."""
    pred = np.asarray(pred, dtype=np.int64)
    match = hungarian_matching(pred, labels)
    return np.array([match.get(p, -1) for p in pred.tolist()], dtype=np.int64)


def hungarian_accuracy(pred: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Accuracy of cluster ids ``pred`` against ``labels`` under :func:`hungarian_matching`; an id or label left
    unmatched counts as wrong."""
    return float(np.mean(hungarian_labels(pred, labels) == np.asarray(labels, dtype=np.int64)))
