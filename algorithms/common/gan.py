"""GAN training techniques of Salimans et al. 2016 ("Improved Techniques for Training GANs", §3), as torch pieces.

- :class:`MinibatchDiscrimination` (§3.2): D sees, for every example, how close it is to the other examples of its
  batch, so a generator that collapses to one mode is easy to spot.
- :func:`minibatch_stddev` (Karras et al. 2018, beyond the paper): the same idea reduced to one number, the average
  over features of their standard deviation across the batch.
- :class:`VirtualBatchNorm` (§3.5): batch normalisation whose statistics come from a reference batch fixed at the
  start of training plus the example itself, so that an example's output does not depend on the rest of its batch.
- :class:`HistoricalAverage` (§3.3): a penalty pulling each player's parameters towards their own running average.

Batch-dependent layers take ``groups``: the sizes of consecutive sub-batches that must not see each other (D scores
its labeled, unlabeled and generated batches in one forward pass, but each batch is its own minibatch, as in the
paper's code, which runs D on each separately).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def per_group(fn, x: torch.Tensor, groups: Sequence[int] | None) -> torch.Tensor:
    """``fn`` applied to each consecutive group of rows of ``x`` (the whole batch when ``groups`` is None)."""
    if groups is None:
        return fn(x)
    if sum(groups) != len(x):
        raise ValueError(f"groups {list(groups)} do not add up to the batch of {len(x)}")
    return torch.cat([fn(part) for part in x.split(list(groups))])


# ------------------------------------------------------------------------------ minibatch discrimination


def minibatch_features(m: torch.Tensor) -> torch.Tensor:
    """o(x_i)_b = sum_{j != i} exp(-||M_{i,b} - M_{j,b}||_1) for M of shape (N, B, C); returns (N, B).

    ``c_b(x_i, x_j) = exp(-||M_{i,b} - M_{j,b}||_L1)`` is kernel b's closeness of examples i and j; the example
    itself (distance 0, closeness 1) is left out of the sum.
    """
    n = len(m)
    dist = torch.cdist(m.transpose(0, 1).contiguous(), m.transpose(0, 1).contiguous(), p=1)  # (B, N, N)
    close = torch.exp(-dist).masked_fill(torch.eye(n, dtype=torch.bool, device=m.device), 0.0)
    return close.sum(dim=2).transpose(0, 1)


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination (§3.2): ``f(x_i) -> [f(x_i), o(x_i) + b]`` with B kernels of C dimensions.

    M_i = f(x_i) T, T in R^{A x B x C}, and o(x_i) in R^B as in :func:`minibatch_features`. As in the paper's code,
    T is weight-normalised over its input axis (``T = theta * exp(log_scale) / ||theta||``), and a data-dependent
    init (:func:`algorithms.common.layers.data_dependent_init`) scales each kernel so that an example's nearest
    neighbour in the init batch lies at L1 distance 2 on average, and sets b so that o + b has mean 0 there.
    """

    def __init__(self, n_in: int, kernels: int, dim: int):
        super().__init__()
        self.kernels, self.dim = kernels, dim
        self.theta = nn.Parameter(torch.randn(n_in, kernels, dim) * 0.05)
        self.log_scale = nn.Parameter(torch.zeros(kernels, dim))
        self.b = nn.Parameter(torch.full((kernels,), -1.0))
        self.pending_init = False

    def tensor(self) -> torch.Tensor:
        """T = theta * exp(log_scale) / ||theta||, the norm over the input axis, of shape (A, B, C)."""
        return self.theta * (self.log_scale.exp() / self.theta.norm(dim=0))

    def forward(self, f: torch.Tensor, groups: Sequence[int] | None = None) -> torch.Tensor:
        m = torch.einsum("na,abc->nbc", f, self.tensor())
        if self.pending_init:
            self._init_from(m)
            m = torch.einsum("na,abc->nbc", f, self.tensor())
        o = per_group(minibatch_features, m, groups)
        return torch.cat([f, o + self.b], dim=1)

    @torch.no_grad()
    def _init_from(self, m: torch.Tensor) -> None:
        dist = torch.cdist(m.transpose(0, 1).contiguous(), m.transpose(0, 1).contiguous(), p=1)  # (B, N, N)
        dist = dist + torch.diag(torch.full((len(m),), float("inf"), device=m.device))
        nearest = dist.min(dim=2).values.mean(dim=1)  # (B,): mean over the batch of the nearest distance
        self.log_scale.sub_(torch.log(nearest / 2).unsqueeze(1))  # all C dims of kernel b scale by 2 / nearest_b
        self.b.copy_(-minibatch_features(m * (2 / nearest).view(1, -1, 1)).mean(dim=0))
        self.pending_init = False


def minibatch_stddev(f: torch.Tensor) -> torch.Tensor:
    """Minibatch standard deviation (Karras et al. 2018): s = mean_k sqrt(Var_j f_k(x_j) + 1e-8) over the batch
    (population variance), as an (N, 1) column, the same for every example. D appends it to its features."""
    s = (f.var(dim=0, correction=0) + 1e-8).sqrt().mean()
    return s.expand(len(f), 1)


# ------------------------------------------------------------------------------ virtual batch normalisation


class VirtualBatchNorm(nn.Module):
    """Virtual batch normalisation (§3.5). The first ``n_ref`` rows of the input are the reference batch.

    Per channel c, with means over the reference rows r and, for images, over the spatial positions too:

        mu_ref = mean_r x_r,  nu_ref = mean_r x_r^2                   (the reference batch's statistics)
        reference rows:  mu = mu_ref, nu = nu_ref
        any other row i: mu_i = (mean_pos x_i + n_ref mu_ref) / (n_ref + 1),
                         nu_i = (mean_pos x_i^2 + n_ref nu_ref) / (n_ref + 1)
        y = gamma (x - mu) / sqrt(nu - mu^2 + eps) + beta

    so each example is normalised with the reference batch plus itself, never with the rest of its batch. The
    reference statistics are recomputed on every pass (with the current weights) and gradients flow through them,
    as in the paper's code. The owner (a generator) puts its fixed reference input in front of every batch.
    """

    def __init__(self, num_features: int, n_ref: int, eps: float = 1e-5):
        super().__init__()
        self.n_ref, self.eps = n_ref, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) < self.n_ref:
            raise ValueError(f"virtual batch norm: {len(x)} rows, fewer than the {self.n_ref} reference rows")
        shape = (1, -1) + (1,) * (x.dim() - 2)
        pos = tuple(range(2, x.dim()))
        own_mean = x.mean(dim=pos) if pos else x  # (N, C)
        own_sq = x.square().mean(dim=pos) if pos else x.square()
        mu_ref, nu_ref = own_mean[: self.n_ref].mean(dim=0), own_sq[: self.n_ref].mean(dim=0)
        k = self.n_ref
        mu = torch.cat([mu_ref.expand(k, -1), (own_mean[k:] + k * mu_ref) / (k + 1)])
        nu = torch.cat([nu_ref.expand(k, -1), (own_sq[k:] + k * nu_ref) / (k + 1)])
        var = (nu - mu.square()).clamp_min(0.0)
        per_row = (len(x), -1) + (1,) * (x.dim() - 2)
        y = (x - mu.view(per_row)) / (var + self.eps).sqrt().view(per_row)
        return y * self.weight.view(shape) + self.bias.view(shape)


# ------------------------------------------------------------------------------ historical averaging


class HistoricalAverage:
    """Historical averaging (§3.3): the penalty ``||theta - (1/t) sum_{i<t} theta[i]||^2`` on a net's parameters.

    theta[0] is the value at :meth:`reset` (after the data-dependent init) and theta[i] the value after the i-th
    :meth:`update` (call it after each optimizer step), so at step t the current parameters are pulled towards the
    mean of all their earlier values. The caller multiplies :meth:`penalty` by its weight.
    """

    def __init__(self, net: nn.Module):
        self.net = net
        self.reset()

    def _params(self) -> list[torch.Tensor]:
        return [p for p in self.net.parameters() if p.requires_grad]

    @torch.no_grad()
    def reset(self) -> None:
        self.mean = [p.detach().clone() for p in self._params()]
        self.count = 1

    def penalty(self) -> torch.Tensor:
        """sum over parameters of (theta - mean)^2, differentiable in theta."""
        return sum((p - m).square().sum() for p, m in zip(self._params(), self.mean))

    @torch.no_grad()
    def update(self) -> None:
        self.count += 1
        for p, m in zip(self._params(), self.mean):
            m.add_((p - m) / self.count)

    def state_dict(self) -> dict:
        return {"mean": [m.clone() for m in self.mean], "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean = [m.to(p.device) for m, p in zip(state["mean"], self._params())]
        self.count = int(state["count"])
