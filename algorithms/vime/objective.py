"""VIME's math (Houthooft et al. 2016, §2): the BNN's variational objective and the information gain. Pure torch.

The dynamics model p(s'|s, a; θ) is a BNN whose weights have the factorized Gaussian posterior
q(θ; φ) = Π_i N(θ_i; μ_i, σ_i²), σ_i = softplus(ρ_i) = log(1 + e^ρ_i), φ = (μ, ρ), and the prior
p(θ) = N(0, σ_p² I). It is fitted by Bayes-by-backprop (Blundell et al. 2015) on a pool D of N transitions,
maximizing the ELBO (Eq. 9), per transition:

    L(φ) = E_{θ~q(·;φ)}[ log p(s'|s, a; θ) ] − KL[q(θ; φ) ‖ p(θ)] / N

with θ = μ + σ ⊙ ε, ε ~ N(0, I) (the reparameterization), and the closed-form KL of factorized Gaussians

    KL[N(μ₁, σ₁²) ‖ N(μ₂, σ₂²)] = Σ_i log(σ₂/σ₁) + (σ₁² + (μ₁ − μ₂)²) / (2σ₂²) − ½.

Information gain (Eq. 13-17). The bonus of a transition (s_t, a_t, s_{t+1}) is how far one Bayesian update on it
moves the posterior: KL[q(θ; φ') ‖ q(θ; φ)], where φ' minimizes
ℓ(φ') = KL[q(θ; φ') ‖ q(θ; φ)] − E_{q(θ;φ')}[log p(s_{t+1}|s_t, a_t; θ)]. One second-order step from φ:

    Δφ = −λ H⁻¹ ∇_φ ℓ = λ H⁻¹ ∇_φ E_q[log p(s_{t+1}|s_t, a_t; θ)]        (∇ of the KL term is 0 at φ' = φ)

with H the Hessian of the KL term at φ' = φ, which is diagonal (§2.3):

    ∂²KL/∂μ_i² = 1 / σ_i²,        ∂²KL/∂ρ_i² = 2 e^{2ρ_i} / ((1 + e^{ρ_i})² σ_i²) = 2 sigmoid(ρ_i)² / σ_i².

- ``second_order`` (the paper's): the KL's quadratic form, KL ≈ ½ Δφᵀ H Δφ = ½ λ² ∇ᵀ H⁻¹ ∇.
- ``explicit``: take the step, φ' = φ + Δφ, and compute KL[q(θ; φ') ‖ q(θ; φ)] exactly. The two agree to O(λ³).

The bonus (Eq. 16 and openai/vime's ``use_kl_ratio_q``): r' = r + η · IG / m, where m is the mean of the median
IGs of the last 10 iterations (this one's included), which keeps the bonus's scale fixed as the model learns.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def softplus_inverse(sigma: float) -> float:
    """ρ with softplus(ρ) = σ."""
    return math.log(math.expm1(sigma))


def kl_factorized_gaussians(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor | float,
                            sigma2: torch.Tensor | float) -> torch.Tensor:
    """KL[N(μ₁, σ₁²) ‖ N(μ₂, σ₂²)] summed over every element (broadcasting)."""
    sigma2 = torch.as_tensor(sigma2, dtype=sigma1.dtype, device=sigma1.device)
    return (torch.log(sigma2 / sigma1) + (sigma1**2 + (mu1 - mu2) ** 2) / (2 * sigma2**2) - 0.5).sum()


def gaussian_log_likelihood(target: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """log N(target; mean, std² I), summed over the last dimension."""
    return (-0.5 * ((target - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)


def negative_elbo(expected_log_likelihood: torch.Tensor, kl_to_prior: torch.Tensor, n_data: int) -> torch.Tensor:
    """−L(φ) per transition: −E_q[log p(s'|s, a; θ)] (a minibatch mean) + KL[q ‖ p] / N."""
    return -expected_log_likelihood + kl_to_prior / n_data


def kl_hessian_diag(rho: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂²KL/∂μ², ∂²KL/∂ρ²) of KL[q(φ') ‖ q(φ)] at φ' = φ, elementwise for σ = softplus(ρ)."""
    sigma = F.softplus(rho)
    return 1.0 / sigma**2, 2.0 * torch.sigmoid(rho) ** 2 / sigma**2


def second_order_information_gain(grads_mu: list[torch.Tensor], grads_rho: list[torch.Tensor],
                                  rhos: list[torch.Tensor], step_size: float) -> torch.Tensor:
    """½ λ² ∇ᵀ H⁻¹ ∇ for a batch of transitions.

    ``grads_mu[k]`` / ``grads_rho[k]``: ∇ of E_q[log p] w.r.t. the k-th μ / ρ tensor, one row per transition
    (shape (B, *rhos[k].shape)); returns (B,).
    """
    total = 0.0
    for g_mu, g_rho, rho in zip(grads_mu, grads_rho, rhos, strict=True):
        h_mu, h_rho = kl_hessian_diag(rho)
        total = total + (g_mu**2 / h_mu).flatten(1).sum(1) + (g_rho**2 / h_rho).flatten(1).sum(1)
    return 0.5 * step_size**2 * total


def explicit_one_step_kl(mus: list[torch.Tensor], rhos: list[torch.Tensor], grads_mu: list[torch.Tensor],
                         grads_rho: list[torch.Tensor], step_size: float) -> torch.Tensor:
    """KL[q(θ; φ + Δφ) ‖ q(θ; φ)] with Δφ = λ H⁻¹ ∇ (one transition: unbatched gradients); a scalar."""
    kl = 0.0
    for mu, rho, g_mu, g_rho in zip(mus, rhos, grads_mu, grads_rho, strict=True):
        h_mu, h_rho = kl_hessian_diag(rho)
        new_mu, new_rho = mu + step_size * g_mu / h_mu, rho + step_size * g_rho / h_rho
        kl = kl + kl_factorized_gaussians(new_mu, F.softplus(new_rho), mu, F.softplus(rho))
    return kl
