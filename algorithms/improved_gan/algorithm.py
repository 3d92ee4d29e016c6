"""Improved-GAN, semi-supervised with feature matching, driven by the genlab platform.

Each training step is one D step (labels, unlabeled data and a fresh batch of G's samples, see
:mod:`.objective`), an update of the moving average of D's weights, and one G step (feature
matching against D's features of the same real batch). The averaged D is the test-time classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from algorithms.common.ema import EMA
from algorithms.common.layers import data_dependent_init
from algorithms.common.schedules import linear_decay, set_lr
from algorithms.improved_gan import objective
from algorithms.improved_gan.config import TRAIN_METRICS, ImprovedGANConfig
from algorithms.improved_gan.nets import (
    Classifier,
    ConvDiscriminator,
    ConvGenerator,
    MLPDiscriminator,
    MLPGenerator,
)
from genlab.algorithm import DataInfo, GenerativeAlgorithm

EVAL_BATCH = 500


def build_nets(hp: ImprovedGANConfig, info: DataInfo) -> tuple[nn.Module, nn.Module]:
    """The discriminator and generator that ``hp.arch`` names, for images of ``info.shape``."""
    if hp.arch == "mlp":
        d = MLPDiscriminator(info.shape, hp.d_hidden, info.num_classes, hp.input_noise, hp.hidden_noise)
        return d, MLPGenerator(hp.z_dim, hp.g_hidden, info.shape)
    _, h, w = info.shape
    if h % 8 or w % 8 or min(h, w) < 16:
        raise ValueError(
            f"hparams.arch: conv needs images whose height and width are multiples of 8 and at least 16 "
            f"(G upsamples from H/8 three times); {info.name or 'this dataset'} has {h}x{w}: use arch mlp"
        )
    d = ConvDiscriminator(info.shape, hp.d_conv, info.num_classes, hp.input_dropout, hp.hidden_dropout)
    return d, ConvGenerator(hp.z_dim, hp.g_conv, info.shape)


class ImprovedGAN(GenerativeAlgorithm):
    hp: ImprovedGANConfig

    def __init__(self, hparams: ImprovedGANConfig, info: DataInfo, device: torch.device | str = "cpu"):
        super().__init__(hparams, info, device)
        d, g = build_nets(hparams, info)
        self.nets = {"D": d.to(self.device), "G": g.to(self.device)}
        self.train_nets = dict(self.nets)
        self.optimizers = {
            k: torch.optim.Adam(net.parameters(), lr=hparams.lr, betas=(hparams.beta1, 0.999))
            for k, net in self.nets.items()
        }
        self.ema = EMA(self.nets["D"], hparams.ema_decay)

    def _noise(self, n: int) -> torch.Tensor:
        return torch.rand(n, self.hp.z_dim, device=self.device)

    def initialize(self, batch: dict[str, torch.Tensor]) -> None:
        """Data-dependent init of the weight-normalised layers: G on noise, D on the real batch."""
        data_dependent_init(self.nets["G"], self._noise(len(batch["x"])))
        data_dependent_init(self.nets["D"], batch["x"])
        self.ema.reset()

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        d, g = self.train_nets["D"], self.train_nets["G"]
        x, x_lab, y_lab = batch["x"], batch["x_lab"], batch["y_lab"]
        n, n_lab = len(x), len(x_lab)

        with torch.no_grad():
            fake = g(self._noise(n))
        logits, _ = d(torch.cat([x_lab, x, fake]))
        logits_lab, logits_unl, logits_fake = logits.split([n_lab, n, n])
        loss_d, sup, unsup = objective.discriminator_loss(
            logits_lab, y_lab, logits_unl, logits_fake, self.hp.unlabeled_weight
        )
        self.optimizers["D"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizers["D"].step()
        self.ema.update()

        _, features = d(torch.cat([x, g(self._noise(n))]))
        f_real, f_fake = features.split([n, n])
        loss_g = objective.feature_matching_loss(f_real.detach(), f_fake, self.hp.fm_distance)
        self.optimizers["G"].zero_grad(set_to_none=True)
        loss_g.backward()  # also leaves gradients on D, cleared before D's next step
        self.optimizers["G"].step()
        self.step += 1

        with torch.no_grad():
            values = torch.stack([
                loss_d, sup, unsup, loss_g,
                objective.real_probability(logits_unl).mean(),
                objective.real_probability(logits_fake).mean(),
                (logits_lab.argmax(dim=1) == y_lab).float().mean(),
            ]).tolist()
        return dict(zip(TRAIN_METRICS, values))

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        d = self.nets["D"].eval()
        wrong_ema = wrong_raw = torch.zeros((), device=self.device)
        for xb, yb in zip(x.split(EVAL_BATCH), y.split(EVAL_BATCH)):
            wrong_ema = wrong_ema + (self.ema.average(xb)[0].argmax(dim=1) != yb).sum()
            wrong_raw = wrong_raw + (d(xb)[0].argmax(dim=1) != yb).sum()
        d.train()
        error, error_raw = (torch.stack([wrong_ema, wrong_raw]) / len(y)).tolist()
        return {"eval/test_error": error, "eval/test_accuracy": 1.0 - error, "eval/test_error_raw": error_raw}

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        g = self.nets["G"].eval()
        images = g(self._noise(n))
        g.train()
        return images

    def models(self) -> dict[str, tuple[nn.Module, torch.Tensor]]:
        """The test-time classifier (the EMA of D) from images, and the generator from noise z ~ U[0, 1)."""
        return {"classifier": (Classifier(self.ema.average), torch.zeros(4, *self.info.shape, device=self.device)),
                "generator": (self.nets["G"], self._noise(4))}

    def end_epoch(self, epoch: int) -> None:
        """Linear lr decay over ``lr_decay_epochs`` from ``lr_decay_start`` (none when it is 0)."""
        set_lr(self.optimizers, linear_decay(self.hp.lr, epoch, self.hp.lr_decay_start, self.hp.lr_decay_epochs))

    def extra_state(self) -> dict:
        return {"ema": self.ema.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.ema.load_state_dict(state["ema"])
