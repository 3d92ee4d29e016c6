"""The networks of Improved-GAN: weight-normalised layers, Gaussian noise, and the paper's D and G.

Weight normalisation (Salimans & Kingma 2016) writes each output unit's weight as ``w = g v / ||v||``.
As in the paper's code, hidden layers of D keep ``g`` fixed after the data-dependent init (a buffer;
the next layer's normalisation makes it redundant) and output layers train it. The data-dependent
init (:func:`data_dependent_init`) runs a batch through a net once; each weight-normalised layer, in
order, sets ``g`` and ``b`` so that its pre-activations on that batch have zero mean and standard
deviation ``init_scale`` per unit.

Both discriminators return ``(logits, features)``: the K class logits and the last hidden layer, the
features that feature matching compares.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn


def _per_unit(t: torch.Tensor, ndim: int, axis: int) -> torch.Tensor:
    """View the per-unit vector ``t`` so that it broadcasts along ``axis`` of an ``ndim``-d tensor."""
    shape = [1] * ndim
    shape[axis] = -1
    return t.view(shape)


class WeightNorm(nn.Module, ABC):
    """Base of the weight-normalised layers: parameters ``v``, ``g``, ``b`` and the data-dependent init."""

    out_axis = 0  # axis of v that indexes the output units

    def __init__(self, v_shape: tuple[int, ...], *, train_g: bool, init_scale: float, v_std: float):
        super().__init__()
        n_out = v_shape[self.out_axis]
        self.v = nn.Parameter(torch.randn(v_shape) * v_std)
        if train_g:
            self.g = nn.Parameter(torch.ones(n_out))
        else:
            self.register_buffer("g", torch.ones(n_out))
        self.b = nn.Parameter(torch.zeros(n_out))
        self.init_scale = init_scale
        self.pending_init = False

    def weight(self) -> torch.Tensor:
        """The effective weight ``g * v / ||v||``, the norm taken over all axes but the output one."""
        dims = [d for d in range(self.v.dim()) if d != self.out_axis]
        norm = torch.linalg.vector_norm(self.v, dim=dims, keepdim=True)
        return _per_unit(self.g, self.v.dim(), self.out_axis) * self.v / norm

    @abstractmethod
    def apply_weight(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """The layer's operation (linear, convolution) with weight ``w`` and bias ``b``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pending_init:
            self._init_from(x)
        return self.apply_weight(x, self.weight(), self.b)

    @torch.no_grad()
    def _init_from(self, x: torch.Tensor) -> None:
        y = self.apply_weight(x, self.weight(), None)
        dims = [0, *range(2, y.dim())]  # all but the unit axis (1)
        mean = y.mean(dims)
        std = (y - _per_unit(mean, y.dim(), 1)).square().mean(dims).add(1e-12).sqrt()
        scale = self.init_scale / std
        self.g.mul_(scale)
        self.b.copy_(-mean * scale)
        self.pending_init = False


class WNLinear(WeightNorm):
    def __init__(self, n_in: int, n_out: int, *, train_g: bool = False, init_scale: float = 1.0,
                 v_std: float = 0.05):
        super().__init__((n_out, n_in), train_g=train_g, init_scale=init_scale, v_std=v_std)

    def apply_weight(self, x, w, b):
        return F.linear(x, w, b)


class WNConv2d(WeightNorm):
    def __init__(self, c_in: int, c_out: int, kernel: int, *, stride: int = 1, padding: int = 0,
                 train_g: bool = False, init_scale: float = 1.0, v_std: float = 0.05):
        super().__init__((c_out, c_in, kernel, kernel), train_g=train_g, init_scale=init_scale, v_std=v_std)
        self.stride, self.padding = stride, padding

    def apply_weight(self, x, w, b):
        return F.conv2d(x, w, b, stride=self.stride, padding=self.padding)


class WNConvTranspose2d(WeightNorm):
    """Transposed convolution; its weight is (in, out, k, k), so the output units are axis 1."""

    out_axis = 1

    def __init__(self, c_in: int, c_out: int, kernel: int, *, stride: int = 1, padding: int = 0,
                 output_padding: int = 0, train_g: bool = False, init_scale: float = 1.0,
                 v_std: float = 0.05):
        super().__init__((c_in, c_out, kernel, kernel), train_g=train_g, init_scale=init_scale, v_std=v_std)
        self.stride, self.padding, self.output_padding = stride, padding, output_padding

    def apply_weight(self, x, w, b):
        return F.conv_transpose2d(x, w, b, stride=self.stride, padding=self.padding,
                                  output_padding=self.output_padding)


@torch.no_grad()
def data_dependent_init(net: nn.Module, *inputs: torch.Tensor) -> None:
    """Run ``net(*inputs)`` once, every weight-normalised layer initialising itself from its input."""
    for m in net.modules():
        if isinstance(m, WeightNorm):
            m.pending_init = True
    net(*inputs)


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise in training mode; the identity in eval mode."""

    def __init__(self, std: float):
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.std > 0:
            return x + self.std * torch.randn_like(x)
        return x


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
