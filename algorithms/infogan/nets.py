"""The networks of InfoGAN: the paper's D/Q and G for MNIST (Table 1) and SVHN/CelebA (Tables 2-3), and a small
dense pair for the 8x8 digits.

D and Q share a trunk; D's head is one dense unit (the logit of D(x)) and Q's head is the paper's
dense(128) -> batch norm -> leaky ReLU -> dense(Q's parameters). Leaky ReLUs have slope 0.1 throughout (the paper's
"lRELU"). Weights start from N(0, 0.02) as in the reference code.

- ``mnist`` (Table 1): D conv 4x4/2 64 -> conv 4x4/2 128 + BN -> dense 1024 + BN; G dense 1024 + BN -> dense
  (H/4 x W/4 x 128) + BN -> deconv 4x4/2 64 + BN -> deconv 4x4/2 to the image, ReLU in G. Needs H, W multiples of 4.
- ``color`` (Tables 2-3, SVHN and CelebA): D conv 4x4/2 64 -> conv 128 + BN -> conv 256 + BN; G dense
  (H/16 x W/16 x 448) + BN -> deconv 4x4/2 256 + BN -> deconv 128 -> deconv 64 -> deconv to the image (tanh).
  The paper trains it on 32x32 images (G from 2x2); on 64x64 CelebA G starts from 4x4, all else the same.
- ``mlp``: dense layers for D's trunk (batch norm after all but the first) and G (batch norm, ReLU).

Images are in [-1, 1], so every G ends with tanh (the reference code's MNIST G ends with a sigmoid on [0, 1]).
"""

from __future__ import annotations

import torch
from torch import nn

SLOPE = 0.1


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(SLOPE)


class DiscriminatorQ(nn.Module):
    """D and Q on one trunk: ``forward(x) -> (logit of D(x) (N,), Q's parameters (N, q_dim))``."""

    def __init__(self, trunk: nn.Module, features: int, q_hidden: int, q_dim: int):
        super().__init__()
        self.trunk = trunk
        self.d_head = nn.Linear(features, 1)
        self.q_head = nn.Sequential(nn.Linear(features, q_hidden), nn.BatchNorm1d(q_hidden), _lrelu(),
                                    nn.Linear(q_hidden, q_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.d_head(h).squeeze(1), self.q_head(h)

    def d_parameters(self) -> list[nn.Parameter]:
        """D's own and the shared trunk's parameters (Q's head has its own optimizer)."""
        return [*self.trunk.parameters(), *self.d_head.parameters()]


class CodeReader(nn.Module):
    """Q as the model users load: images in [-1, 1] -> Q's parameters of the codes, ``[logits of categorical code
    1, ..., logits of code L, μ of the continuous codes, (log σ of them when learned)]``; the argmax of code 1's
    logits is the image's cluster (on digits, its digit up to a relabelling)."""

    def __init__(self, d: DiscriminatorQ):
        super().__init__()
        self.trunk, self.q_head = d.trunk, d.q_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q_head(self.trunk(x))


def _conv(c_in: int, c_out: int, bn: bool) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=not bn), *([nn.BatchNorm2d(c_out)] if bn else []),
            _lrelu()]


def _deconv(c_in: int, c_out: int, bn: bool) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=not bn),
            *([nn.BatchNorm2d(c_out)] if bn else []), nn.ReLU()]


def _dense(n_in: int, n_out: int, bn: bool, act: nn.Module) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out, bias=not bn), *([nn.BatchNorm1d(n_out)] if bn else []), act]


def build(arch: str, shape: tuple[int, int, int], g_in: int, q_dim: int, q_hidden: int,
          mlp_d_hidden: list[int] | None = None, mlp_g_hidden: list[int] | None = None) -> tuple[DiscriminatorQ,
                                                                                               nn.Module]:
    """(D with Q, G) for images of ``shape`` (C, H, W), G taking ``g_in`` inputs and Q giving ``q_dim`` outputs."""
    c, h, w = shape
    if arch == "mlp":
        d_hidden, g_hidden = mlp_d_hidden or [256, 256], mlp_g_hidden or [256, 256]
        trunk: list[nn.Module] = [nn.Flatten()]
        n = c * h * w
        for i, width in enumerate(d_hidden):
            trunk += _dense(n, width, bn=i > 0, act=_lrelu())
            n = width
        d = DiscriminatorQ(nn.Sequential(*trunk), n, q_hidden, q_dim)
        layers: list[nn.Module] = []
        n = g_in
        for width in g_hidden:
            layers += _dense(n, width, bn=True, act=nn.ReLU())
            n = width
        g = nn.Sequential(*layers, nn.Linear(n, c * h * w), nn.Tanh(), nn.Unflatten(1, shape))
    elif arch == "mnist":
        h4, w4 = h // 4, w // 4
        trunk = nn.Sequential(*_conv(c, 64, bn=False), *_conv(64, 128, bn=True), nn.Flatten(),
                              *_dense(128 * h4 * w4, 1024, bn=True, act=_lrelu()))
        d = DiscriminatorQ(trunk, 1024, q_hidden, q_dim)
        g = nn.Sequential(*_dense(g_in, 1024, bn=True, act=nn.ReLU()),
                          *_dense(1024, 128 * h4 * w4, bn=True, act=nn.ReLU()), nn.Unflatten(1, (128, h4, w4)),
                          *_deconv(128, 64, bn=True), nn.ConvTranspose2d(64, c, 4, stride=2, padding=1), nn.Tanh())
    elif arch == "color":
        h16, w16 = h // 16, w // 16
        trunk = nn.Sequential(*_conv(c, 64, bn=False), *_conv(64, 128, bn=True), *_conv(128, 256, bn=True),
                              nn.Flatten())
        d = DiscriminatorQ(trunk, 256 * (h // 8) * (w // 8), q_hidden, q_dim)
        g = nn.Sequential(*_dense(g_in, 448 * h16 * w16, bn=True, act=nn.ReLU()), nn.Unflatten(1, (448, h16, w16)),
                          *_deconv(448, 256, bn=True), *_deconv(256, 128, bn=False), *_deconv(128, 64, bn=False),
                          nn.ConvTranspose2d(64, c, 4, stride=2, padding=1), nn.Tanh())
    else:
        raise ValueError(f"hparams.arch: unknown architecture {arch!r}; one of mlp, mnist, color")
    for net in (d, g):
        net.apply(_init)
    return d, g


@torch.no_grad()
def _init(m: nn.Module) -> None:
    """N(0, 0.02) weights and zero biases for dense and conv layers; batch norm starts at (1, 0)."""
    if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
