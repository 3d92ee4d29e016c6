"""InfoGAN driven by the genlab platform.

Each training step draws (z, c) from the prior and G's images G(z, c), then
1. one step of D and Q (Adam at lr_d for D's trunk and head, lr_q for Q's head) on
   L_D = -V(D, G) - λ·L_I, with L_I read by Q from the detached fakes (the shared trunk learns the codes too);
2. one step of G (Adam at lr_g) on the non-saturating GAN loss minus λ·L_I through the updated D and Q; with
   ``mi_to_generator: false`` G's loss has no L_I term (the plain-GAN baseline of the paper's Fig. 1).
See :mod:`.objective` for the equations. Evaluation estimates L_I on fresh samples and reads the categorical codes
of the real test images with Q (matched to the true classes by the Hungarian algorithm; labels never reach training).
"""

from __future__ import annotations

import torch

from algorithms.infogan import objective
from algorithms.infogan.hparams import ARCH_MULTIPLE, TRAIN_METRICS, InfoGANHparams
from algorithms.infogan.nets import CodeReader, build
from genlab.algorithm import GenerativeAlgorithm, ImageGrid
from genlab.context import DataContext

EVAL_BATCH = 500
TRAVERSAL_ROWS = 10
"""Rows of a traversal grid: each a fixed noise vector (the same at every evaluation)."""
TRAVERSAL_STEPS = 10
"""Columns of a continuous code's traversal: values evenly from -2 to 2 (training sees [-1, 1])."""
TRAVERSAL_SEED = 20160612


class InfoGAN(GenerativeAlgorithm):
    hp: InfoGANHparams

    def __init__(self, hparams: InfoGANHparams, info: DataContext, device: torch.device | str = "cpu"):
        super().__init__(hparams, info, device)
        codes = hparams.codes
        need = ARCH_MULTIPLE.get(hparams.arch)
        if need and (info.shape[1] % need or info.shape[2] % need):
            raise ValueError(f"hparams.arch: {hparams.arch} needs image sides that are multiples of {need}; "
                             f"{info.name or 'this dataset'} is {info.shape[1]}x{info.shape[2]}: use arch mlp")
        self.prior = objective.LatentPrior(codes.categorical, codes.continuous, codes.noise, codes.noise_dist,
                                           learned_std=hparams.cont_std == "learned", fixed_std=hparams.cont_fixed_std)
        d, g = build(hparams.arch, info.shape, self.prior.input_dim, self.prior.q_dim, hparams.q_hidden,
                     hparams.mlp_d_hidden, hparams.mlp_g_hidden)
        self.nets = {"D": d.to(self.device), "G": g.to(self.device)}
        self.train_nets = dict(self.nets)
        betas = (hparams.beta1, 0.999)
        self.optimizers = {
            "D": torch.optim.Adam(d.d_parameters(), lr=hparams.lr_d, betas=betas),
            "Q": torch.optim.Adam(d.q_head.parameters(), lr=hparams.lr_q, betas=betas),
            "G": torch.optim.Adam(g.parameters(), lr=hparams.lr_g, betas=betas),
        }

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        hp, d, g = self.hp, self.train_nets["D"], self.train_nets["G"]
        x = batch["x"]
        latent = self.prior.sample(len(x), self.device)
        fake = g(self.prior.generator_input(latent))

        # D and Q: max V(D, G) + λ·L_I over D's trunk and head and Q's head.
        logit_real, _ = d(x)
        logit_fake, q_fake = d(fake.detach())
        loss_disc = objective.discriminator_loss(logit_real, logit_fake)
        bound = self.prior.mi_bound(q_fake, latent)
        loss_info = -bound.weighted(hp.lambda_cat, hp.lambda_cont)
        for k in ("D", "Q"):
            self.optimizers[k].zero_grad(set_to_none=True)
        (loss_disc + loss_info).backward()
        self.optimizers["D"].step()
        self.optimizers["Q"].step()

        # G: min -log D(G(z, c)) - λ·L_I (no L_I for the plain-GAN baseline).
        logit_gen, q_gen = d(fake)
        loss_gen = objective.generator_loss(logit_gen)
        loss_g = loss_gen
        if hp.mi_to_generator:
            loss_g = loss_g - self.prior.mi_bound(q_gen, latent).weighted(hp.lambda_cat, hp.lambda_cont)
        self.optimizers["G"].zero_grad(set_to_none=True)
        loss_g.backward()  # also leaves gradients on D and Q, cleared before their next step
        self.optimizers["G"].step()
        self.step += 1

        with torch.no_grad():
            values = torch.stack([loss_disc, loss_gen, loss_info, torch.sigmoid(logit_real).mean(),
                                  torch.sigmoid(logit_fake).mean(), bound.cat + bound.cont]).tolist()
        return dict(zip(TRAIN_METRICS, values))

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """L_I on ``eval_samples`` fresh samples (per code type, beside H(c)); Q's categorical codes of the test
        images ``x`` against their labels ``y`` (first code: eval/cat_accuracy; best code: eval/cat_accuracy_best)."""
        d, g = self.nets["D"].eval(), self.nets["G"].eval()
        try:
            cat = cont = 0.0
            stds = []
            n_total = self.hp.eval_samples
            for start in range(0, n_total, EVAL_BATCH):
                n = min(EVAL_BATCH, n_total - start)
                latent = self.prior.sample(n, self.device)
                _, q = d(g(self.prior.generator_input(latent)))
                bound = self.prior.mi_bound(q, latent)
                cat, cont = cat + bound.cat.item() * n, cont + bound.cont.item() * n
                stds.append(self.prior.read_q(q)[2].exp().mean(0) * n)
            cat, cont = cat / n_total, cont / n_total
            out = {"eval/mi_bound": cat + cont, "eval/mi_bound_cat": cat, "eval/mi_bound_cont": cont,
                   "eval/entropy": self.prior.entropy_cat + self.prior.entropy_cont,
                   "eval/entropy_cat": self.prior.entropy_cat, "eval/entropy_cont": self.prior.entropy_cont}
            if self.prior.continuous:
                out["eval/cont_std"] = (torch.stack(stds).sum(0) / n_total).mean().item()
        finally:
            d.train()
            g.train()
        if self.prior.categorical and len(y) and (y >= 0).all():
            codes, labels = self.read_codes(x).numpy(), y.cpu().numpy()
            acc = [objective.hungarian_accuracy(codes[:, i], labels) for i in range(codes.shape[1])]
            out.update({"eval/cat_accuracy": acc[0], "eval/cat_accuracy_best": max(acc)})
        return out

    @torch.no_grad()
    def read_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Q's most probable value of each categorical code for images ``x`` (D in eval mode, in batches): (N, n_cat)
        int64 on the CPU. What ``eval/cat_accuracy`` matches to the labels (its first code)."""
        d = self.nets["D"].eval()
        try:
            logits = [self.prior.read_q(d(xb)[1])[0] for xb in x.split(EVAL_BATCH)]
            return torch.cat([torch.stack([lg.argmax(dim=1) for lg in part], dim=1) for part in logits]).cpu()
        finally:
            d.train()

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self._generate(self.prior.sample(n, self.device))

    def _generate(self, latent: objective.Latent) -> torch.Tensor:
        g = self.nets["G"].eval()
        try:
            return torch.cat([g(self.prior.generator_input(part)) for part in _chunks(latent, EVAL_BATCH)])
        finally:
            g.train()

    def models(self) -> dict[str, tuple[torch.nn.Module, torch.Tensor]]:
        """``generator``: G from its input ``[z, one_hot(c_1), ..., one_hot(c_L), c_cont]`` (the example: 4 draws of
        the prior) to images; ``code_reader``: Q from images to the codes' parameters (:class:`.nets.CodeReader`)."""
        latent = self.prior.sample(4, self.device, generator=torch.Generator().manual_seed(TRAVERSAL_SEED))
        return {"generator": (self.nets["G"], self.prior.generator_input(latent)),
                "code_reader": (CodeReader(self.nets["D"]), torch.zeros(4, *self.info.shape, device=self.device))}

    @torch.no_grad()
    def images(self) -> dict[str, ImageGrid]:
        """``samples`` and one traversal per code: ``traversal_cat<i>`` (columns: the K values of categorical code
        i) and ``traversal_cont<j>`` (columns: continuous code j from -2 to 2). Each row keeps one fixed noise
        vector; in row r every other categorical code takes the value r mod K and every other continuous code 0."""
        grids = {"samples": ImageGrid(self.sample(100), nrow=10)}
        base = self.prior.sample(TRAVERSAL_ROWS, "cpu", generator=torch.Generator().manual_seed(TRAVERSAL_SEED))
        rows = torch.arange(TRAVERSAL_ROWS)
        for i, k in enumerate(self.prior.categorical):
            base.cat[:, i] = rows % k
        base.cont.zero_()
        for i, k in enumerate(self.prior.categorical):
            latent = _repeat(base, k)  # row-major: row r, column v
            latent.cat[:, i] = torch.arange(k).repeat(TRAVERSAL_ROWS)
            grids[f"traversal_cat{i}"] = ImageGrid(self._generate(_to(latent, self.device)), nrow=k)
        for j in range(self.prior.continuous):
            latent = _repeat(base, TRAVERSAL_STEPS)
            latent.cont[:, j] = torch.linspace(-2, 2, TRAVERSAL_STEPS).repeat(TRAVERSAL_ROWS)
            grids[f"traversal_cont{j}"] = ImageGrid(self._generate(_to(latent, self.device)), nrow=TRAVERSAL_STEPS)
        return grids


def _repeat(latent: objective.Latent, times: int) -> objective.Latent:
    """Each row repeated ``times`` times in place (row-major grid rows)."""
    return objective.Latent(*(t.repeat_interleave(times, dim=0) for t in (latent.z, latent.cat, latent.cont)))


def _to(latent: objective.Latent, device: torch.device) -> objective.Latent:
    return objective.Latent(latent.z.to(device), latent.cat.to(device), latent.cont.to(device))


def _chunks(latent: objective.Latent, size: int):
    for start in range(0, len(latent.z), size):
        yield objective.Latent(latent.z[start : start + size], latent.cat[start : start + size],
                               latent.cont[start : start + size])
