"""Hyperparameters of Improved-GAN (semi-supervised, feature matching). Imports pydantic only."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from genlab.hparams import Hparams

Fraction = Annotated[float, Field(ge=0, lt=1)]
"""A float in [0, 1)."""


TRAIN_METRICS = ("loss/disc", "loss/sup", "loss/unsup", "loss/gen",
                 "disc/real_prob", "disc/fake_prob", "disc/train_accuracy")
EVAL_METRICS = ("eval/test_error", "eval/test_accuracy", "eval/test_error_raw")


class ImprovedGANConfig(Hparams):
    metrics: ClassVar[tuple[str, ...]] = EVAL_METRICS + TRAIN_METRICS
    uses_labels: ClassVar[bool] = True

    arch: Literal["mlp", "conv"] = "mlp"
    """`mlp`: the paper's MNIST model (noise-regularised WN MLP D); `conv`: its CIFAR-10/SVHN conv nets."""
    z_dim: PositiveInt = 100
    """Size of the generator's uniform noise z ~ U[0, 1)."""
    d_hidden: list[PositiveInt] = [1000, 500, 250, 250, 250]
    """mlp: widths of D's hidden weight-normalised dense layers; the last one gives the matched features."""
    g_hidden: list[PositiveInt] = [500, 500]
    """mlp: widths of G's dense + batch-norm + softplus layers."""
    d_conv: tuple[PositiveInt, PositiveInt, PositiveInt] = (96, 192, 192)
    """conv: D channels of the first 3x3 block, the second 3x3 block, and the valid-3x3/1x1/1x1 head."""
    g_conv: tuple[PositiveInt, PositiveInt, PositiveInt] = (512, 256, 128)
    """conv: G channels at H/8 (from the dense layer), H/4 and H/2 (after each 5x5 stride-2 deconv)."""
    input_noise: NonNegativeFloat = 0.3
    """mlp: std of the Gaussian noise added to D's input in training."""
    hidden_noise: NonNegativeFloat = 0.5
    """mlp: std of the Gaussian noise added after each of D's hidden layers in training."""
    input_dropout: Fraction = 0.2
    """conv: dropout probability on D's input."""
    hidden_dropout: Fraction = 0.5
    """conv: dropout probability after each of D's two strided blocks."""
    lr: PositiveFloat = 0.003
    """Adam learning rate of D and G (paper: 0.003 for MNIST, 0.0003 for CIFAR-10/SVHN)."""
    beta1: Fraction = 0.5
    """Adam beta1 of D and G."""
    lr_decay_start: NonNegativeInt = 0
    """Epoch (count of finished epochs) at which the linear decay of lr starts."""
    lr_decay_epochs: NonNegativeInt = 0
    """Decay lr linearly to 0 over this many epochs from lr_decay_start; 0 = constant lr."""
    unlabeled_weight: NonNegativeFloat = 1.0
    """Weight of L_unsupervised in D's loss (the paper's code halves it: 0.5); 0 = supervised-only baseline."""
    ema_decay: Fraction = 0.999
    """Decay of the exponential moving average of D's weights used at test time; 0 = the raw weights."""
    fm_distance: Literal["squared", "absolute"] = "squared"
    """Feature matching: mean squared (paper's MNIST code) or absolute (its CIFAR/SVHN code) difference."""

    @model_validator(mode="after")
    def _consistent(self) -> ImprovedGANConfig:
        if self.arch == "mlp" and not self.d_hidden:
            raise ValueError("d_hidden: the mlp discriminator needs at least one hidden layer (its features)")
        if self.arch == "mlp" and not self.g_hidden:
            raise ValueError("g_hidden: the mlp generator needs at least one hidden layer")
        if self.lr_decay_start > 0 and self.lr_decay_epochs == 0:
            raise ValueError(
                f"lr_decay_start: {self.lr_decay_start} has no effect while lr_decay_epochs is 0; "
                "set lr_decay_epochs to the length of the decay"
            )
        return self
