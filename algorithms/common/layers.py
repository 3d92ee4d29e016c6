"""Weight-normalised layers with data-dependent init, and Gaussian-noise layers.

Weight normalisation (Salimans & Kingma 2016, arXiv 1602.07868) writes each output unit's weight as
``w = g v / ||v||``. Hidden layers may keep ``g`` fixed after the data-dependent init (a buffer; the
next layer's normalisation makes it redundant, as in the Improved-GAN code) and output layers train it.
The data-dependent init (:func:`data_dependent_init`) runs a batch through a net once; each
weight-normalised layer, in order, sets ``g`` and ``b`` so that its pre-activations on that batch have
zero mean and standard deviation ``init_scale`` per unit.

Used by Improved-GAN (its D and G) and IAF-VAE (its ResNet VAE), the two papers that train with it.
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
    """Run ``net(*inputs)`` once, every weight-normalised layer initialising itself from its input.

    Any other layer with a ``pending_init`` attribute (e.g. :class:`algorithms.common.gan.MinibatchDiscrimination`)
    initialises itself in the same pass."""
    for m in net.modules():
        if isinstance(m, WeightNorm) or hasattr(m, "pending_init"):
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
