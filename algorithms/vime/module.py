"""VIME's dynamics model as a learner-only RLModule: a Bayesian neural network p(s'|s, a; θ), q(θ; φ) factorized.

Every weight and bias θ_i has a mean μ_i and σ_i = softplus(ρ_i) (``self.mu[k]``, ``self.rho[k]``: weight and bias
of each layer in turn). The forward pass is written as a function of explicit (μ, ρ) lists, so that the learner
can differentiate the likelihood of each transition separately (``torch.func``) for the information gain.

Inputs and targets are standardized with the replay pool's statistics (buffers set by :meth:`set_stats`): the
input is concat(s, a) (a Box action clipped to the bounds the env executes, a Discrete one one-hot), the target
is the change s' − s, a reparameterization of p(s'|s, a) that leaves the model's job (and its information gain)
the same but does not ask it to learn the identity first.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from algorithms.vime import objective
from genlab.rl.auxiliary import clip_actions, register_action_bounds, safe_std

IG_CHUNK_FLOATS = 2**24
"""Bound on the per-draw, per-transition weight gradients held at once by the information gain (64 MB of float32):
the rows of a batch are processed in as few chunks as fit (sparse MountainCar: one pass for 16k rows)."""


class BayesianDynamics(TorchRLModule):
    """``model_config``: ``hiddens`` (ReLU widths, at least one), ``init_std`` (q's σ at the start),
    ``action_low`` / ``action_high`` (Box actions; None = no clipping)."""

    def setup(self) -> None:
        if not isinstance(self.observation_space, gym.spaces.Box):
            raise ValueError(f"VIME's dynamics model needs a Box observation space, got {self.observation_space}; "
                             "wrap the env (e.g. gymnasium.wrappers.FlattenObservation)")
        if not isinstance(self.action_space, (gym.spaces.Box, gym.spaces.Discrete)):
            raise ValueError(f"VIME's dynamics model takes a Box or Discrete action space, got {self.action_space}")
        hiddens = list(self.model_config["hiddens"])
        if not hiddens:
            raise ValueError("hiddens: the BNN needs at least one hidden layer")
        self.obs_dim = int(np.prod(self.observation_space.shape))
        self.act_dim = int(self.action_space.n) if self.discrete else int(np.prod(self.action_space.shape))
        self.in_dim = self.obs_dim + self.act_dim
        rho0 = objective.softplus_inverse(float(self.model_config["init_std"]))
        self.mu, self.rho = nn.ParameterList(), nn.ParameterList()
        sizes = [self.in_dim, *hiddens, self.obs_dim]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            self.mu.append(nn.Parameter(torch.empty(fan_in, fan_out).uniform_(-bound, bound)))
            self.rho.append(nn.Parameter(torch.full((fan_in, fan_out), rho0)))
            self.mu.append(nn.Parameter(torch.zeros(fan_out)))
            self.rho.append(nn.Parameter(torch.full((fan_out,), rho0)))

        self.register_buffer("in_mean", torch.zeros(self.in_dim))
        self.register_buffer("in_std", torch.ones(self.in_dim))
        self.register_buffer("out_mean", torch.zeros(self.obs_dim))
        self.register_buffer("out_std", torch.ones(self.obs_dim))
        # The learner's counters, here so that they are checkpointed with the model: iterations that paid a bonus
        # (η's decay), transitions so far on which the env paid reward (explore/*) and iterations since the first
        # (η's decay after reward).
        self.register_buffer("bonus_iterations", torch.zeros((), dtype=torch.long))
        self.register_buffer("rewarded_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("rewarded_iterations", torch.zeros((), dtype=torch.long))
        register_action_bounds(self, self.act_dim)

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)

    # --- data -------------------------------------------------------------------------------------------------
    def raw_inputs(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """concat(s, a) before standardization: a Box action clipped to the env's bounds, a Discrete one one-hot."""
        if self.discrete:
            act = F.one_hot(actions.long(), self.act_dim).float()
        else:
            act = clip_actions(self, actions.flatten(1).float())
        return torch.cat([obs.flatten(1).float(), act], dim=-1)

    @torch.no_grad()
    def set_stats(self, in_mean: torch.Tensor, in_std: torch.Tensor, out_mean: torch.Tensor,
                  out_std: torch.Tensor) -> None:
        """Standardize inputs and targets with these (the replay pool's) statistics; constant features get std 1."""
        if self.discrete:  # one-hot columns stay 0/1
            in_mean, in_std = in_mean.clone(), in_std.clone()
            in_mean[self.obs_dim:], in_std[self.obs_dim:] = 0.0, 1.0
        self.in_mean.copy_(in_mean)
        self.in_std.copy_(safe_std(in_std))
        self.out_mean.copy_(out_mean)
        self.out_std.copy_(safe_std(out_std))

    def standardize(self, raw_inputs: torch.Tensor, deltas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y): the standardized input concat(s, a) and target s' − s."""
        return (raw_inputs - self.in_mean) / self.in_std, (deltas - self.out_mean) / self.out_std

    # --- the model ----------------------------------------------------------------------------------------------
    def params(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The variational parameters (μ list, ρ list) as tensors."""
        return list(self.mu), list(self.rho)

    def draw_noise(self, num_samples: int) -> list[torch.Tensor]:
        """ε ~ N(0, I) for ``num_samples`` draws of every parameter tensor: (num_samples, *shape) each."""
        return [torch.randn(num_samples, *mu.shape, device=mu.device) for mu in self.mu]

    @staticmethod
    def predict(mus: list[torch.Tensor], rhos: list[torch.Tensor], x: torch.Tensor,
                noise: list[torch.Tensor]) -> torch.Tensor:
        """The network's mean prediction for each draw θ = μ + softplus(ρ) ⊙ ε: (K, B, obs_dim) from x (B, in)."""
        k = noise[0].shape[0]
        h = x.unsqueeze(0).expand(k, *x.shape)
        n_layers = len(mus) // 2
        for layer in range(n_layers):
            w = mus[2 * layer] + F.softplus(rhos[2 * layer]) * noise[2 * layer]  # (K, in, out)
            b = mus[2 * layer + 1] + F.softplus(rhos[2 * layer + 1]) * noise[2 * layer + 1]  # (K, out)
            h = torch.baddbmm(b.unsqueeze(1), h, w)
            if layer < n_layers - 1:
                h = F.relu(h)
        return h

    def expected_log_likelihood(self, mus: list[torch.Tensor], rhos: list[torch.Tensor], x: torch.Tensor,
                                y: torch.Tensor, noise: list[torch.Tensor], likelihood_std: float) -> torch.Tensor:
        """E_q[log p(y | x; θ)] of each row, estimated with the given draws ε: (B,)."""
        pred = self.predict(mus, rhos, x, noise)
        return objective.gaussian_log_likelihood(y.unsqueeze(0), pred, likelihood_std).mean(0)

    def kl_to_prior(self, prior_std: float) -> torch.Tensor:
        """KL[q(θ; φ) ‖ N(0, prior_std² I)]."""
        return sum(objective.kl_factorized_gaussians(mu, F.softplus(rho), 0.0, prior_std)
                   for mu, rho in zip(self.mu, self.rho))

    # --- information gain ----------------------------------------------------------------------------------------
    def per_row_gradients(self, mus: list[torch.Tensor], rhos: list[torch.Tensor], x: torch.Tensor,
                          y: torch.Tensor, noise: list[torch.Tensor],
                          likelihood_std: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """∇_μ and ∇_ρ of E_q[log p(y_n | x_n; θ)] for every row n separately: lists of (B, *shape).

        One backward pass of the summed likelihood gives each layer's output gradient δ per row and draw (rows do
        not interact); a layer's weight gradient for row n is then Σ_k h_k,n ⊗ δ_k,n (h: its input), the ρ
        gradient the same times ε_k ⊙ sigmoid(ρ) (∂θ/∂ρ = ε sigmoid(ρ)). No per-row backward pass.
        """
        n_layers = len(mus) // 2
        with torch.enable_grad():
            k = noise[0].shape[0]
            h = x.unsqueeze(0).expand(k, *x.shape)
            layer_inputs, outputs = [], []
            for layer in range(n_layers):
                w = (mus[2 * layer] + F.softplus(rhos[2 * layer]) * noise[2 * layer]).detach()
                b = (mus[2 * layer + 1] + F.softplus(rhos[2 * layer + 1]) * noise[2 * layer + 1]).detach()
                layer_inputs.append(h.detach())
                z = torch.baddbmm(b.unsqueeze(1), h, w)
                if not z.requires_grad:  # the first layer: its output is where the graph starts
                    z.requires_grad_(True)
                outputs.append(z)
                h = F.relu(z) if layer < n_layers - 1 else z
            log_lik = objective.gaussian_log_likelihood(y.unsqueeze(0), h, likelihood_std).mean(0).sum()
            deltas = torch.autograd.grad(log_lik, outputs)  # (K, B, out) each
        g_mu, g_rho = [], []
        for layer in range(n_layers):
            hin, delta = layer_inputs[layer], deltas[layer]
            eps_w, eps_b = noise[2 * layer], noise[2 * layer + 1]
            sig_w, sig_b = torch.sigmoid(rhos[2 * layer]), torch.sigmoid(rhos[2 * layer + 1])
            # Σ_k h_k,n ⊗ δ_k,n for every row n: one batched matmul over rows, (B, in, K) @ (B, K, out).
            g_mu.append(torch.bmm(hin.permute(1, 2, 0), delta.permute(1, 0, 2)))
            # Σ_k (h_k,n ⊗ δ_k,n) ⊙ ε_k: accumulated draw by draw (faster than one (K, B, in, out) product).
            g_rho_w = torch.zeros_like(g_mu[-1])
            for k in range(len(eps_w)):
                g_rho_w += hin[k].unsqueeze(2) * (delta[k].unsqueeze(1) * eps_w[k])
            g_rho.append(g_rho_w * sig_w)
            g_mu.append(delta.sum(0))
            g_rho.append((delta * eps_b.unsqueeze(1)).sum(0) * sig_b)
        return g_mu, g_rho

    def information_gain(self, x: torch.Tensor, y: torch.Tensor, *, noise: list[torch.Tensor],
                         likelihood_std: float, step_size: float, method: str = "second_order") -> torch.Tensor:
        """KL[q(θ; φ') ‖ q(θ; φ)] after one step on each transition (rows of standardized x, y): (B,).

        ``second_order``: all rows at once (:meth:`per_row_gradients`, in chunks bounded by ``IG_CHUNK_FLOATS``);
        ``explicit``: one row at a time with plain autograd, in float64, the step taken and the KL computed
        exactly (an independent check of both the batching and the quadratic approximation). Both use the same ε.
        """
        mus, rhos = [m.detach() for m in self.mu], [r.detach() for r in self.rho]
        if method == "second_order":
            chunk = max(1, IG_CHUNK_FLOATS // (noise[0].shape[0] * max(m.numel() for m in mus)))
            out = [objective.second_order_information_gain(
                       *self.per_row_gradients(mus, rhos, x[i:i + chunk], y[i:i + chunk], noise, likelihood_std),
                       rhos, step_size)
                   for i in range(0, len(x), chunk)]
            return torch.cat(out) if out else x.new_zeros(0)
        if method == "explicit":
            mus, rhos, noise = [[t.double() for t in ts] for ts in (mus, rhos, noise)]
            out = []
            for xi, yi in zip(x.double(), y.double()):
                with torch.enable_grad():
                    m = [t.clone().requires_grad_(True) for t in mus]
                    r = [t.clone().requires_grad_(True) for t in rhos]
                    log_lik = self.expected_log_likelihood(m, r, xi[None], yi[None], noise, likelihood_std)[0]
                    grads = torch.autograd.grad(log_lik, m + r)
                out.append(objective.explicit_one_step_kl(mus, rhos, list(grads[:len(m)]), list(grads[len(m):]),
                                                          step_size))
            return torch.stack(out).to(x.dtype) if out else x.new_zeros(0)
        raise ValueError(f"ig_method must be 'second_order' or 'explicit', got {method!r}")

    # --- RLModule --------------------------------------------------------------------------------------------------
    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        # The learner computes the ELBO on a replay-pool sample (VIMELearner.aux_loss), not on the PPO minibatch.
        return {}

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        raise NotImplementedError("the dynamics model is learner-only: the learner calls its methods")

