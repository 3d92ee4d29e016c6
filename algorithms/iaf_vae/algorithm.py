"""IAF-VAE driven by the genlab platform: one VAE, Adamax, a Polyak average of its weights for evaluation.

Data: the platform hands images in [-1, 1]. For the Bernoulli likelihood each training step binarizes them
afresh (a Bernoulli draw per pixel from the runner-seeded torch RNG: dynamic binarization), and evaluation uses
one fixed binarization of the test images (seeded by ``eval_binarize_seed``); for the discretized logistic they
are put back on their 256 levels.

Each training step maximises the free-bits objective L_lambda on one minibatch (see :mod:`.objective`) and
updates the moving average. Evaluation scores the averaged weights: the ELBO, and log p(x) by importance
sampling with ``eval_k`` samples per image, computed ``eval_batch`` rows at a time so memory stays bounded.
"""

from __future__ import annotations

import math

import torch

from algorithms.common.ema import EMA
from algorithms.common.layers import data_dependent_init
from algorithms.iaf_vae import nets, objective
from algorithms.iaf_vae.hparams import IAFVAEHparams
from genlab.algorithm import GenerativeAlgorithm, ImageGrid
from genlab.context import DataContext

N_SHOWN = 50
"""Test images whose reconstructions are drawn at each evaluation (beside the inputs, 5 pairs to a row)."""


class IAFVAE(GenerativeAlgorithm):
    hp: IAFVAEHparams

    def __init__(self, hparams: IAFVAEHparams, info: DataContext, device: torch.device | str = "cpu"):
        super().__init__(hparams, info, device)
        self.dims = math.prod(info.shape)
        vae = nets.build(hparams, info.shape).to(self.device)
        self.nets = {"vae": vae}
        self.train_nets = dict(self.nets)
        self.optimizers = {"vae": torch.optim.Adamax(vae.parameters(), lr=hparams.lr,
                                                     betas=(hparams.beta1, hparams.beta2))}
        self.ema = EMA(vae, hparams.ema_decay)
        self._shown: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------------ data

    def target(self, x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """Images in [-1, 1] -> what the likelihood scores: a Bernoulli draw of each pixel (from the global torch RNG,
        or from ``seed`` for a fixed binarization), or the 8-bit level 0..255."""
        p = ((x + 1) / 2).clamp(0, 1)
        if self.hp.likelihood == "logistic":
            return (p * (objective.N_BINS - 1)).round()
        if seed is None:
            return torch.bernoulli(p)
        g = torch.Generator().manual_seed(seed)  # on the CPU: the same binarization on any device
        return torch.bernoulli(p.cpu(), generator=g).to(x.device)

    def _as_image(self, target: torch.Tensor) -> torch.Tensor:
        top = 1 if self.hp.likelihood == "bernoulli" else objective.N_BINS - 1
        return target / top * 2 - 1

    # ----------------------------------------------------------------------------------- training

    def initialize(self, batch: dict[str, torch.Tensor]) -> None:
        """Data-dependent init of every weight-normalised layer on one binarized (or 8-bit) batch."""
        data_dependent_init(self.nets["vae"], self.target(batch["x"]))
        self.ema.reset()

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        out = self.train_nets["vae"](self.target(batch["x"]))
        recon = -out["log_px_z"].mean()
        kl = out["kl"].sum(1).mean()
        loss = recon + objective.free_bits_kl(out["kl"], self.hp.free_bits)
        opt = self.optimizers["vae"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.hp.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.nets["vae"].parameters(), self.hp.grad_clip)
        opt.step()
        self.ema.update()
        self.step += 1
        neg_elbo = recon + kl
        values = torch.stack([loss, neg_elbo, recon, kl, objective.bits_per_dim(-neg_elbo, self.dims)]).tolist()
        return {"loss/objective": values[0], "loss/neg_elbo": values[1], "loss/recon": values[2],
                "loss/kl": values[3], "loss/bits_per_dim": values[4]}

    # ---------------------------------------------------------------------------------- evaluation

    @torch.no_grad()
    def log_weights(self, target: torch.Tensor, k: int, vae: torch.nn.Module | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """log w = log p(x|z) + log p(z) - log q(z|x) of ``k`` posterior samples per image, as (N, k), with
        log p(x|z) and the KL estimate of each; at most ``eval_batch`` rows (images x samples) per forward pass."""
        vae = vae if vae is not None else self.ema.average
        per_pass = self.hp.eval_batch
        n_img = max(1, per_pass // k)
        k_pass = min(k, per_pass)
        log_px_z, kl = [], []
        for chunk in target.split(n_img):
            lp, kk = [], []
            for start in range(0, k, k_pass):
                out = vae(chunk, k=min(k_pass, k - start))
                lp.append(out["log_px_z"].view(len(chunk), -1))
                kk.append(out["kl"].sum(1).view(len(chunk), -1))
            log_px_z.append(torch.cat(lp, 1))
            kl.append(torch.cat(kk, 1))
        log_px_z, kl = torch.cat(log_px_z), torch.cat(kl)
        return log_px_z - kl, log_px_z, kl

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """ELBO, importance-sampled log p(x) (nats per image and bits/dim), KL and reconstruction cost on the test
        images, scored with the averaged weights. The ELBO averages all ``eval_k`` samples of each image."""
        if self.hp.eval_images is not None:
            x = x[: self.hp.eval_images]
        target = self.target(x, seed=self.hp.eval_binarize_seed)
        self._shown = target[:N_SHOWN]
        log_w, log_px_z, kl = self.log_weights(target, self.hp.eval_k)
        log_px = objective.importance_log_px(log_w).mean()
        elbo = log_w.mean()
        values = torch.stack([log_px, elbo, kl.mean(), -log_px_z.mean(), objective.bits_per_dim(log_px, self.dims),
                              objective.bits_per_dim(elbo, self.dims)]).tolist()
        return dict(zip(("eval/log_px", "eval/elbo", "eval/kl", "eval/recon", "eval/bits_per_dim",
                         "eval/elbo_bits_per_dim"), values))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Means of p(x|z) for z from the prior, under the averaged weights."""
        return self.ema.average.sample(n)

    @torch.no_grad()
    def reconstruct(self, target: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z) for one z ~ q(z|x) per image, as images in [-1, 1] (averaged weights)."""
        vae = self.ema.average
        return vae.likelihood.image(vae(target)["out"])

    def images(self) -> dict[str, ImageGrid]:
        """Samples, and (after an evaluation) test inputs beside their reconstructions, 5 pairs to a row."""
        grids = {"samples": ImageGrid(self.sample(100), nrow=10)}
        if self._shown is not None:
            pairs = torch.stack([self._as_image(self._shown), self.reconstruct(self._shown)], 1).flatten(0, 1)
            grids["reconstructions"] = ImageGrid(pairs, nrow=10)
        return grids

    def models(self) -> dict[str, tuple[torch.nn.Module, torch.Tensor]]:
        """The decoder (averaged weights) from z ~ N(0, I) to images, for the one-latent models (mlp, conv); the
        ResNet VAE's stacked latents have no single input to hand a user."""
        vae = self.ema.average
        if not isinstance(vae, nets.LatentVAE):
            return {}
        return {"decoder": (nets.ImageDecoder(vae), torch.zeros(4, vae.z_dim, device=self.device))}

    def extra_state(self) -> dict:
        return {"ema": self.ema.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.ema.load_state_dict(state["ema"])
