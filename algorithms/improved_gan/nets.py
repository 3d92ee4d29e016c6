"""The networks of Improved-GAN: the paper's D and G, built from the shared weight-normalised and noise layers.

As in the paper's code, hidden layers of D keep the weight-norm gain ``g`` fixed after the data-dependent
init and output layers train it (see :mod:`algorithms.common.layers`).

Both discriminators return ``(logits, features)``: the K class logits and the last hidden layer, the
features that feature matching compares.
"""

from __future__ import annotations

import torch
from torch import nn

from algorithms.common.layers import GaussianNoise, WNConv2d, WNConvTranspose2d, WNLinear

# -------------------------------------------------------------------------------------- MLP (MNIST)


class MLPDiscriminator(nn.Module):
    """The paper's MNIST D: noise on the input, WN dense + ReLU + noise layers, WN dense to K logits."""

    def __init__(self, shape: tuple[int, int, int], hidden: list[int], num_classes: int,
                 input_noise: float, hidden_noise: float):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), GaussianNoise(input_noise)]
        n_in = shape[0] * shape[1] * shape[2]
        for i, width in enumerate(hidden):
            if i > 0:
                layers.append(GaussianNoise(hidden_noise))
            layers += [WNLinear(n_in, width, v_std=0.1), nn.ReLU()]
            n_in = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(GaussianNoise(hidden_noise), WNLinear(n_in, num_classes, train_g=True, v_std=0.1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(features), features


class MLPGenerator(nn.Module):
    """The paper's MNIST G: z -> (dense, batch norm, softplus) layers -> WN dense -> tanh, as images."""

    def __init__(self, z_dim: int, hidden: list[int], shape: tuple[int, int, int]):
        super().__init__()
        layers: list[nn.Module] = []
        n_in = z_dim
        for width in hidden:
            layers += [nn.Linear(n_in, width, bias=False), nn.BatchNorm1d(width), nn.Softplus()]
            n_in = width
        layers += [WNLinear(n_in, shape[0] * shape[1] * shape[2], train_g=True), nn.Tanh(), nn.Unflatten(1, shape)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


# ------------------------------------------------------------------------------ conv (CIFAR-10, SVHN)


def _conv_block(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> list[nn.Module]:
    return [WNConv2d(c_in, c_out, kernel, stride=stride, padding=padding), nn.LeakyReLU(0.2)]


class ConvDiscriminator(nn.Module):
    """The paper's CIFAR-10/SVHN D: dropout, WN 3x3 conv blocks (the third strided), a valid 3x3 and two
    1x1 convs, global average pooling (the features) and a WN dense layer to K logits; leaky ReLU 0.2."""

    def __init__(self, shape: tuple[int, int, int], widths: tuple[int, int, int], num_classes: int,
                 input_dropout: float, hidden_dropout: float):
        super().__init__()
        a, b, c = widths
        self.body = nn.Sequential(
            nn.Dropout(input_dropout),
            *_conv_block(shape[0], a), *_conv_block(a, a), *_conv_block(a, a, stride=2),
            nn.Dropout(hidden_dropout),
            *_conv_block(a, b), *_conv_block(b, b), *_conv_block(b, b, stride=2),
            nn.Dropout(hidden_dropout),
            *_conv_block(b, c, padding=0), *_conv_block(c, c, kernel=1, padding=0),
            *_conv_block(c, c, kernel=1, padding=0),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = WNLinear(c, num_classes, train_g=True, init_scale=0.1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(features), features


class ConvGenerator(nn.Module):
    """The paper's CIFAR-10/SVHN G: z -> dense to H/8 x W/8 -> two 5x5 stride-2 deconvs (batch norm,
    ReLU) -> WN 5x5 stride-2 deconv -> tanh. Weights start from N(0, 0.05) as in the paper's code."""

    def __init__(self, z_dim: int, widths: tuple[int, int, int], shape: tuple[int, int, int]):
        super().__init__()
        a, b, c = widths
        h, w = shape[1] // 8, shape[2] // 8
        up = dict(kernel_size=5, stride=2, padding=2, output_padding=1, bias=False)
        self.net = nn.Sequential(
            nn.Linear(z_dim, a * h * w, bias=False), nn.BatchNorm1d(a * h * w), nn.ReLU(),
            nn.Unflatten(1, (a, h, w)),
            nn.ConvTranspose2d(a, b, **up), nn.BatchNorm2d(b), nn.ReLU(),
            nn.ConvTranspose2d(b, c, **up), nn.BatchNorm2d(c), nn.ReLU(),
            WNConvTranspose2d(c, shape[0], 5, stride=2, padding=2, output_padding=1, train_g=True, init_scale=0.1),
            nn.Tanh(),
        )
        for m in self.net:
            if isinstance(m, (nn.Linear, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, std=0.05)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Classifier(nn.Module):
    """A discriminator as the K-class classifier users load: images in [-1, 1] -> the K class logits."""

    def __init__(self, discriminator: nn.Module):
        super().__init__()
        self.discriminator = discriminator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x)[0]
