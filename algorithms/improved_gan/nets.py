"""The networks of Improved-GAN: the paper's D and G, built from the shared weight-normalised and noise layers.

As in the paper's code, hidden layers of D keep the weight-norm gain ``g`` fixed after the data-dependent
init and output layers train it (see :mod:`algorithms.common.layers`).

Both discriminators return ``(logits, features)``: the K class logits and the last hidden layer, the
features that feature matching compares. Between the features and the K-way output layer they may add minibatch
features (:class:`MinibatchHead`: minibatch discrimination, minibatch standard deviation); these depend on the
batch, so ``forward(x, groups)`` takes the sizes of the sub-batches (labeled, unlabeled, generated) that are
minibatches of their own.

Both generators normalise their hidden layers with batch norm or virtual batch norm (``norm``); with virtual
batch norm the generator owns a reference noise batch ``z_ref``, drawn once at construction and kept in its
state, which it runs in front of every batch (and drops from the output).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from algorithms.common.gan import MinibatchDiscrimination, VirtualBatchNorm, minibatch_stddev, per_group
from algorithms.common.layers import GaussianNoise, WNConv2d, WNConvTranspose2d, WNLinear

Norm = Literal["batch", "virtual_batch"]


class MinibatchHead(nn.Module):
    """What D adds to its features before the output layer: ``[f, o_mbd(f), s_std(f)]`` (each part optional)."""

    def __init__(self, n_in: int, kernels: int = 0, kernel_dim: int = 5, stddev: bool = False):
        super().__init__()
        self.mbd = MinibatchDiscrimination(n_in, kernels, kernel_dim) if kernels else None
        self.std = stddev
        self.n_out = n_in + kernels + int(stddev)

    def forward(self, f: torch.Tensor, groups: Sequence[int] | None = None) -> torch.Tensor:
        out = f
        if self.mbd is not None:
            out = self.mbd(out, groups)
        if self.std:
            out = torch.cat([out, per_group(minibatch_stddev, f, groups)], dim=1)
        return out


def _norm(kind: Norm, width: int, n_ref: int, dims: int) -> nn.Module:
    if kind == "virtual_batch":
        return VirtualBatchNorm(width, n_ref)
    return nn.BatchNorm1d(width) if dims == 1 else nn.BatchNorm2d(width)


class _WithReference(nn.Module):
    """A generator whose virtual-batch-norm layers need its fixed reference noise ``z_ref`` in front of each batch."""

    net: nn.Sequential

    def _init_reference(self, z_dim: int, norm: Norm, n_ref: int) -> None:
        self.norm = norm
        # U[0, 1) like the training noise; drawn from torch's global generator (the runner seeds it), kept in state.
        if norm == "virtual_batch":
            self.register_buffer("z_ref", torch.rand(n_ref, z_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.norm != "virtual_batch":
            return self.net(z)
        k = len(self.z_ref)
        return self.net(torch.cat([self.z_ref, z]))[k:]

# -------------------------------------------------------------------------------------- MLP (MNIST)


class MLPDiscriminator(nn.Module):
    """The paper's MNIST D: noise on the input, WN dense + ReLU + noise layers, WN dense to K logits."""

    def __init__(self, shape: tuple[int, int, int], hidden: list[int], num_classes: int,
                 input_noise: float, hidden_noise: float, minibatch: dict | None = None):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), GaussianNoise(input_noise)]
        n_in = shape[0] * shape[1] * shape[2]
        for i, width in enumerate(hidden):
            if i > 0:
                layers.append(GaussianNoise(hidden_noise))
            layers += [WNLinear(n_in, width, v_std=0.1), nn.ReLU()]
            n_in = width
        self.body = nn.Sequential(*layers)
        self.minibatch = MinibatchHead(n_in, **(minibatch or {}))
        self.head = nn.Sequential(GaussianNoise(hidden_noise),
                                  WNLinear(self.minibatch.n_out, num_classes, train_g=True, v_std=0.1))

    def forward(self, x: torch.Tensor, groups: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(self.minibatch(features, groups)), features


class UnitScaleWNLinear(WNLinear):
    """A weight-normalised dense layer that keeps its built scale ``g = 1`` and bias ``b = 0`` through the
    data-dependent init: the paper's MNIST code normalises G's output layer with ``l2normalize``, which has no
    data-dependent init (unlike its CIFAR-10/SVHN ``weight_norm``)."""

    @torch.no_grad()
    def _init_from(self, x: torch.Tensor) -> None:
        self.pending_init = False


class SymmetricSigmoid(nn.Module):
    """``2 sigmoid(u) - 1`` (= tanh(u / 2)): the paper's sigmoid output for pixels in [0, 1], mapped to genlab's
    [-1, 1] pixels. A plain tanh would double the output's slope (tanh(u) = 2 sigmoid(2u) - 1)."""

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(u) * 2 - 1


class MLPGenerator(_WithReference):
    """The paper's MNIST G: z -> (dense, batch norm, softplus) layers -> WN dense -> ``output``, as images in [-1, 1].

    ``output="sigmoid"`` is the reference code's stage in genlab's pixel range: WN dense at scale 1 without a
    data-dependent init, then ``2 sigmoid - 1``. ``"tanh"``: a data-dependent init of the output layer (its
    pre-activations at std 1, i.e. ``g`` near 2) and a tanh; each of Adam's early steps then moves G's pixels about 4
    times as far, and on real MNIST digits G collapsed to one saturated image within 20 steps."""

    def __init__(self, z_dim: int, hidden: list[int], shape: tuple[int, int, int], norm: Norm = "batch",
                 n_ref: int = 100, output: str = "tanh"):
        super().__init__()
        self._init_reference(z_dim, norm, n_ref)
        layers: list[nn.Module] = []
        n_in = z_dim
        for width in hidden:
            layers += [nn.Linear(n_in, width, bias=False), _norm(norm, width, n_ref, 1), nn.Softplus()]
            n_in = width
        pixels = shape[0] * shape[1] * shape[2]
        if output == "sigmoid":
            layers += [UnitScaleWNLinear(n_in, pixels, train_g=True), SymmetricSigmoid()]
        else:
            layers += [WNLinear(n_in, pixels, train_g=True), nn.Tanh()]
        layers.append(nn.Unflatten(1, shape))
        self.net = nn.Sequential(*layers)


# ------------------------------------------------------------------------------ conv (CIFAR-10, SVHN)


def _conv_block(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> list[nn.Module]:
    return [WNConv2d(c_in, c_out, kernel, stride=stride, padding=padding), nn.LeakyReLU(0.2)]


class ConvDiscriminator(nn.Module):
    """The paper's CIFAR-10/SVHN D: dropout, WN 3x3 conv blocks (the third strided), a valid 3x3 and two
    1x1 convs, global average pooling (the features) and a WN dense layer to K logits; leaky ReLU 0.2."""

    def __init__(self, shape: tuple[int, int, int], widths: tuple[int, int, int], num_classes: int,
                 input_dropout: float, hidden_dropout: float, input_noise: float = 0.0, minibatch: dict | None = None):
        super().__init__()
        a, b, c = widths
        self.body = nn.Sequential(
            *([GaussianNoise(input_noise)] if input_noise else []),
            nn.Dropout(input_dropout),
            *_conv_block(shape[0], a), *_conv_block(a, a), *_conv_block(a, a, stride=2),
            nn.Dropout(hidden_dropout),
            *_conv_block(a, b), *_conv_block(b, b), *_conv_block(b, b, stride=2),
            nn.Dropout(hidden_dropout),
            *_conv_block(b, c, padding=0), *_conv_block(c, c, kernel=1, padding=0),
            *_conv_block(c, c, kernel=1, padding=0),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.minibatch = MinibatchHead(c, **(minibatch or {}))
        self.head = WNLinear(self.minibatch.n_out, num_classes, train_g=True, init_scale=0.1)

    def forward(self, x: torch.Tensor, groups: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(self.minibatch(features, groups)), features


class ConvGenerator(_WithReference):
    """The paper's CIFAR-10/SVHN G: z -> dense to H/8 x W/8 -> two 5x5 stride-2 deconvs (batch norm,
    ReLU) -> WN 5x5 stride-2 deconv -> tanh. Weights start from N(0, 0.05) as in the paper's code."""

    def __init__(self, z_dim: int, widths: tuple[int, int, int], shape: tuple[int, int, int], norm: Norm = "batch",
                 n_ref: int = 100):
        super().__init__()
        self._init_reference(z_dim, norm, n_ref)
        a, b, c = widths
        h, w = shape[1] // 8, shape[2] // 8
        up = dict(kernel_size=5, stride=2, padding=2, output_padding=1, bias=False)
        self.net = nn.Sequential(
            nn.Linear(z_dim, a * h * w, bias=False), _norm(norm, a * h * w, n_ref, 1), nn.ReLU(),
            nn.Unflatten(1, (a, h, w)),
            nn.ConvTranspose2d(a, b, **up), _norm(norm, b, n_ref, 2), nn.ReLU(),
            nn.ConvTranspose2d(b, c, **up), _norm(norm, c, n_ref, 2), nn.ReLU(),
            WNConvTranspose2d(c, shape[0], 5, stride=2, padding=2, output_padding=1, train_g=True, init_scale=0.1),
            nn.Tanh(),
        )
        for m in self.net:
            if isinstance(m, (nn.Linear, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, std=0.05)


class Classifier(nn.Module):
    """A discriminator as the K-class classifier users load: images in [-1, 1] -> the K class logits."""

    def __init__(self, discriminator: nn.Module):
        super().__init__()
        self.discriminator = discriminator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x)[0]
