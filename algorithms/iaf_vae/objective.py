r"""The math of IAF-VAE (Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling 2016, arXiv 1606.04934).

Variational lower bound (eq. 1-2). For data x, latents z, a generative model p(x, z) = p(x|z) p(z) and an
approximate posterior q(z|x):

    log p(x) >= L(x) = E_q(z|x) [ log p(x|z) + log p(z) - log q(z|x) ]                                  (ELBO)
                     = E_q [ log p(x|z) ] - KL(q(z|x) || p(z)).

Inverse autoregressive flow (section 4, algorithm 1). The encoder gives mu_0, sigma_0 and a context h; then

    eps ~ N(0, I),   z_0 = mu_0 + sigma_0 * eps
    for t = 1..T:    [m_t, s_t] = AutoregressiveNN_t(z_{t-1}, h)                                         (eq. 11)
                     sigma_t = sigmoid(s_t)
                     z_t = sigma_t * z_{t-1} + (1 - sigma_t) * m_t                                        (eq. 14)

Because m_t, s_t depend on z_{t-1, <i} only (MADE masks, Germain et al. 2015: the Jacobian of the
AutoregressiveNN is strictly triangular), dz_t/dz_{t-1} is triangular with diagonal sigma_t, so

    log q(z_T | x) = - sum_i ( 1/2 eps_i^2 + 1/2 log(2 pi) + log sigma_{0,i} + sum_{t=1..T} log sigma_{t,i} )   (eq. 10)

The order of the variables is reversed between steps, so that every z_i is updated from both sides.
``iaf_step`` is this gated update ("numerically stable", the paper's preferred form of z_t = mu_t +
sigma_t z_{t-1}); its location-only variant z_t = z_{t-1} + m_t has a unit Jacobian (log det = 0). The
diagonal-Gaussian baseline is T = 0.

The KL term is a single-sample estimate, element by element: kl_i = log q(z_i ...) - log p(z_i ...)
(summing gives log q(z|x) - log p(z)); for the hierarchical model p(z_l | z_>l) comes from the top-down path.

Free bits (section 5 / appendix): the latents are split into K groups j, and the objective is

    L_lambda = E_{x ~ M} [ E_q [ log p(x|z) ] ] - sum_j max( lambda, E_{x ~ M} [ KL(q(z_j|x) || p(z_j)) ] )

where M is the minibatch: a group's KL averaged over the minibatch is not pushed below lambda nats.

Importance-sampled marginal likelihood (the paper's test log p(x), 128 samples for MNIST; Burda et al. 2015):

    log p(x) ~= log (1/k) sum_{j=1..k} p(x, z^j) / q(z^j | x) = logsumexp_j( log w_j ) - log k,   z^j ~ q(z|x)

which is a lower bound whose expectation grows with k towards log p(x) (k = 1: the ELBO).

Likelihoods: Bernoulli for binarized images, log p(x|z) = sum_i x_i log p_i + (1 - x_i) log(1 - p_i); and a
discretized logistic for 8-bit images (the paper's CIFAR-10 model): pixel value k in 0..255 falls in the bin
[k/256, (k+1)/256) of [0, 1], and

    P(k | mean, scale) = sigmoid((k+1)/256 - mean) / scale) - sigmoid((k/256 - mean) / scale),

with the outer bins reaching to -inf and +inf so that the 256 probabilities sum to 1 (the reference code leaves
the tails out). Rates: bits/dim = -log p(x) / (D ln 2) for D = C x H x W dimensions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)
N_BINS = 256


# ------------------------------------------------------------------------------------- distributions


def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, exp(log_std)^2), element by element."""
    return -0.5 * (LOG_2PI + 2 * log_std + ((z - mean) * torch.exp(-log_std)).square())


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, 1), element by element."""
    return -0.5 * (LOG_2PI + z.square())


def bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x; sigmoid(logits)) for x in {0, 1}, element by element (stable in the logits)."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none")


def discretized_logistic_log_prob(bins: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                                  n_bins: int = N_BINS) -> torch.Tensor:
    """log P(bin | mean, scale) of the logistic on [0, 1] discretized into ``n_bins`` equal bins.

    ``bins``: integer-valued (any float/int dtype) in 0..n_bins-1; ``mean`` in [0, 1] units. The outer bins take
    the tails. sigmoid(b) - sigmoid(a) is computed in log space as
    log sigmoid(b) - softplus(a) + log(1 - exp(a - b)), which is stable for a < b of any size.
    """
    inv_scale = torch.exp(-log_scale)
    lower = (bins / n_bins - mean) * inv_scale  # a
    upper = ((bins + 1) / n_bins - mean) * inv_scale  # b
    middle = F.logsigmoid(upper) - F.softplus(lower) + torch.log(-torch.expm1(lower - upper))
    first = F.logsigmoid(upper)  # P(x < 1/256)
    last = -F.softplus(lower)  # P(x >= 255/256) = 1 - sigmoid(a)
    return torch.where(bins <= 0, first, torch.where(bins >= n_bins - 1, last, middle))


# --------------------------------------------------------------------------------------------- IAF


def iaf_step(z: torch.Tensor, m: torch.Tensor, s: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One IAF step (eq. 14): ``(z_t, log sigma_t)`` element by element.

    With ``s``: z_t = sigma * z + (1 - sigma) * m, sigma = sigmoid(s), log|dz_t,i/dz_i| = log sigma_i.
    Without (location-only): z_t = z + m and the log-determinant is 0.
    """
    if s is None:
        return z + m, torch.zeros_like(z)
    sigma = torch.sigmoid(s)
    return sigma * z + (1 - sigma) * m, F.logsigmoid(s)


# -------------------------------------------------------------------------------------- MADE masks


def made_degrees(n: int, reverse: bool = False) -> torch.Tensor:
    """Degrees 1..n of the n autoregressive variables (n..1 when the order is reversed)."""
    d = torch.arange(1, n + 1)
    return d.flip(0) if reverse else d


def hidden_degrees(width: int, n: int) -> torch.Tensor:
    """Degrees of a hidden layer: 1..n-1 in turn (MADE's deterministic assignment), so every degree is present
    when width >= n - 1. With n = 1 there is nothing to depend on: degree 1 (outputs then see only the context)."""
    return torch.arange(width) % max(n - 1, 1) + 1


def made_masks(n: int, hidden: list[int], n_outputs: int, reverse: bool = False) -> list[torch.Tensor]:
    """Masks (out x in) of a MADE over ``n`` variables with the given hidden widths and ``n_outputs`` outputs per
    variable (output j*n + i belongs to variable i). Hidden unit k may see input i when deg(k) >= deg(i);
    output i may see hidden unit k when deg(i) > deg(k): so output i depends on inputs of lower degree only."""
    d_in = made_degrees(n, reverse)
    degrees = [d_in] + [hidden_degrees(w, n) for w in hidden]
    masks = [(d_out[:, None] >= d_prev[None, :]).float() for d_prev, d_out in zip(degrees[:-1], degrees[1:])]
    d_out = d_in.repeat(n_outputs)
    masks.append((d_out[:, None] > degrees[-1][None, :]).float())
    return masks


def conv_made_masks(n: int, hidden: list[int], n_outputs: int, kernel: int, reverse: bool = False
                    ) -> list[torch.Tensor]:
    """Masks (out x in x k x k) of a masked-convolution MADE over an n-channel feature map.

    The variables are ordered by position (raster order; reversed when ``reverse``), then by channel degree at one
    position (as in the reference code's ``ar_conv2d``): a kernel tap at an earlier position connects fully, the
    centre tap uses the dense MADE mask of the channels, later positions are cut.
    """
    c = kernel // 2
    before = torch.zeros(kernel, kernel)
    before[:c] = 1  # rows above the centre
    before[c, :c] = 1  # left of the centre on its row
    if reverse:
        before = before.flip(0, 1)
    masks = []
    for dense in made_masks(n, hidden, n_outputs, reverse):
        m = before.expand(*dense.shape, kernel, kernel).clone()
        m[:, :, c, c] = dense
        masks.append(m)
    return masks


# ----------------------------------------------------------------------------------- the objective


def free_bits_kl(kl_groups: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The KL part of L_lambda for a minibatch: sum_j max(lambda, mean over the batch of group j's KL).

    ``kl_groups``: (N, K) single-sample KL estimates per image and group. lambda = 0 gives the plain mean KL.
    """
    per_group = kl_groups.mean(0)
    if free_bits > 0:
        per_group = per_group.clamp(min=free_bits)
    return per_group.sum()


def importance_log_px(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/k) sum_j exp(log w_j) over the last axis: ``log_w`` (..., k) = log p(x, z^j) - log q(z^j | x)."""
    return torch.logsumexp(log_w, dim=-1) - math.log(log_w.shape[-1])


def bits_per_dim(log_px: torch.Tensor | float, dims: int) -> torch.Tensor | float:
    """-log p(x) in nats -> bits per dimension."""
    return -log_px / (dims * math.log(2))
