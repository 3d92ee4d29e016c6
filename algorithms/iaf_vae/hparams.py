"""Hyperparameters of IAF-VAE (Kingma et al. 2016, arXiv 1606.04934). Imports pydantic only.

Three models share one objective (see :mod:`.objective`):

- ``mlp``: a dense VAE, one latent vector; for CI on the 8x8 digits;
- ``conv``: the paper's MNIST model, one latent vector (32-d) between a ResNet conv encoder and decoder;
- ``resnet``: the paper's CIFAR-10 ResNet VAE, stacked stochastic layers with bidirectional (top-down) inference.

The posterior is a diagonal Gaussian (``posterior: diag``, the baseline) or that Gaussian followed by
``iaf_depth`` IAF steps, each a MADE of ``iaf_hidden_layers`` layers of ``iaf_width`` units (masked
convolutions in the ``resnet`` model).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from genlab.context import RunContext
from genlab.errors import SpecError
from genlab.hparams import Hparams

Fraction = Annotated[float, Field(ge=0, lt=1)]
"""A float in [0, 1)."""

MAX_EVAL_SAMPLES = 10_000


class IAFVAEHparams(Hparams):
    metrics: ClassVar[tuple[str, ...]] = (
        "eval/log_px", "eval/elbo", "eval/kl", "eval/bits_per_dim", "loss/neg_elbo", "loss/kl",
        "eval/recon", "eval/elbo_bits_per_dim", "loss/objective", "loss/recon", "loss/bits_per_dim")
    progress: ClassVar[tuple[str, ...]] = ("eval/log_px", "eval/elbo", "eval/kl", "eval/bits_per_dim",
                                           "loss/neg_elbo", "loss/kl")
    uses_labels: ClassVar[bool] = False

    arch: Literal["mlp", "conv", "resnet"] = "mlp"
    """`mlp`: dense VAE (CI); `conv`: the paper's MNIST ResNet conv VAE; `resnet`: its CIFAR-10 hierarchical VAE."""
    likelihood: Literal["bernoulli", "logistic"] = "bernoulli"
    """p(x|z): `bernoulli` on dynamically binarized images; `logistic`: discretized logistic on 256 levels (8-bit)."""
    z_dim: PositiveInt = 32
    """mlp/conv: size of the latent vector; resnet: stochastic feature maps of each stochastic layer."""
    posterior: Literal["diag", "iaf"] = "iaf"
    """`diag`: diagonal Gaussian q(z|x) (the baseline, IAF off); `iaf`: that Gaussian followed by IAF steps."""
    iaf_depth: PositiveInt = 2
    """Number of IAF steps T (Table 1's Depth); the variable order is reversed between steps."""
    iaf_width: PositiveInt = 320
    """Hidden units (resnet: feature maps) of each step's autoregressive network (Table 1's Width)."""
    iaf_hidden_layers: PositiveInt = 1
    """Hidden layers of each step's MADE; the context h is added to the first one."""
    iaf_scale: bool = True
    """True: the gated location+scale step z <- sigma*z + (1-sigma)*m; False: location-only z <- z + m."""
    iaf_forget_bias: float = 1.0
    """Added to s at every step so that sigma = sigmoid(s) starts near 1 (the paper: 'e.g. +1 or +2')."""
    context_dim: PositiveInt = 64
    """mlp/conv: size of the context h that the encoder hands to every IAF step (resnet: res_channels)."""
    mlp_hidden: list[PositiveInt] = [256, 256]
    """mlp: widths of the encoder's ELU layers; the decoder mirrors them."""
    conv_channels: list[PositiveInt] = [16, 32, 32]
    """conv: channels of the ResNet stages; each stage after the first halves the image (the decoder mirrors)."""
    conv_blocks: PositiveInt = 2
    """conv: ResNet blocks per stage."""
    conv_dense: PositiveInt = 450
    """conv: width of the dense layer between the conv stack and the latent (and back)."""
    res_levels: list[PositiveInt] = [2, 2]
    """resnet: stochastic layers per level; the first level works at H/2, each later one at half the previous."""
    res_channels: PositiveInt = 64
    """resnet: deterministic feature maps of every layer (the reference code's n_h / h_size)."""
    free_bits: NonNegativeFloat = 0.0
    """Free bits lambda (nats) per group of latents: the KL of a group below lambda is not penalised; 0 = off."""
    free_bits_groups: PositiveInt | None = None
    """mlp/conv: split the latent vector into this many groups for free bits (None = one per latent)."""
    lr: PositiveFloat = 0.002
    """Adamax learning rate (the paper's code: 0.002)."""
    beta1: Fraction = 0.9
    """Adamax beta1."""
    beta2: Fraction = 0.999
    """Adamax beta2."""
    grad_clip: NonNegativeFloat = 0.0
    """Clip the gradient's global norm to this value; 0 = no clipping."""
    ema_decay: Fraction = 0.999
    """Polyak (exponential moving) average of the weights, used for evaluation and samples; 0 = the raw weights."""
    eval_k: int = Field(default=128, ge=1, le=MAX_EVAL_SAMPLES)
    """Importance samples per test image for eval/log_px (the paper: 128 on MNIST), 1 to 10000."""
    eval_batch: PositiveInt = 2000
    """Rows (images x samples) per forward pass in evaluation: bounds its memory whatever eval_k is."""
    eval_images: PositiveInt | None = None
    """Evaluate on the first this many test images (quicker periodic evaluation); None = the whole test set."""
    eval_binarize_seed: NonNegativeInt = 0
    """bernoulli: seed of the fixed binarization of the test images (training draws a fresh one every step)."""

    @model_validator(mode="after")
    def _consistent(self) -> IAFVAEHparams:
        """Problems between fields, one line each starting with the field (a SpecError keeps the field's path)."""
        problems = []
        if self.free_bits_groups is not None and self.arch == "resnet":
            problems.append("free_bits_groups: the resnet model has one free-bits group per stochastic feature map "
                            "of each layer (as the reference code); remove free_bits_groups")
        elif self.free_bits_groups is not None and self.z_dim % self.free_bits_groups:
            problems.append(f"free_bits_groups: {self.free_bits_groups} does not divide z_dim={self.z_dim}; choose "
                            "a divisor of z_dim (the groups are equal slices of the latent vector)")
        empty = {"mlp": ("mlp_hidden", self.mlp_hidden), "conv": ("conv_channels", self.conv_channels),
                 "resnet": ("res_levels", self.res_levels)}[self.arch]
        if not empty[1]:
            problems.append(f"{empty[0]}: the {self.arch} model needs at least one entry")
        if problems:
            raise SpecError("\n".join(problems))
        return self

    def check(self, ctx: RunContext) -> list[str]:
        """The resnet model halves the image once in its input convolution and once per later level."""
        _, h, w = ctx.data.shape
        levels = len(self.res_levels)
        if self.arch != "resnet" or (h % 2**levels == 0 and w % 2**levels == 0):
            return []
        most = 0
        while h % 2 ** (most + 1) == 0 and w % 2 ** (most + 1) == 0:
            most += 1
        fix = f"use at most {most} levels (a shorter res_levels)" if most else "use arch conv or mlp"
        return [f"hparams.res_levels: {levels} levels halve the image {levels} times, so its height and width must be "
                f"multiples of {2**levels}; {ctx.data.name} is {h}x{w}: {fix}"]
