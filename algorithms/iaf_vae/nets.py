"""The networks of IAF-VAE: masked (MADE) layers, IAF flows, and the three VAEs.

Every layer is weight-normalised with data-dependent init (:mod:`algorithms.common.layers`), with ELU
nonlinearities, as in the paper. Each VAE's ``forward(target, k)`` encodes the images once, draws ``k`` posterior
samples per image (rows image-major: image i's samples are rows i*k .. i*k+k-1) and returns

- ``log_px_z`` (N*k,): log p(x|z) of each sample;
- ``kl`` (N*k, K): the single-sample KL estimate log q(z|x) - log p(z) of each free-bits group
  (its sum over groups is the sample's log q(z|x) - log p(z));
- ``out``: the decoder's output (likelihood parameters), for reconstructions.

``target`` is what the likelihood scores: {0, 1} pixels (bernoulli) or bin indices 0..255 as floats (logistic).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.common.layers import WNConv2d, WNConvTranspose2d, WNLinear
from algorithms.iaf_vae import objective
from algorithms.iaf_vae.hparams import IAFVAEHparams

# ------------------------------------------------------------------------------------ masked layers


class _Masked:
    """Weight norm over the masked weight: w = g (mask * v) / ||mask * v|| per output unit (output axis 0).

    An output unit whose mask row is empty (MADE's first variable) has zero weight; its gain keeps 1 at init."""

    mask: torch.Tensor

    def weight(self) -> torch.Tensor:
        v = self.v * self.mask
        norm = v.flatten(1).norm(dim=1).clamp_min(1e-12)
        return (self.g / norm).view(-1, *[1] * (v.dim() - 1)) * v

    @torch.no_grad()
    def _init_from(self, x: torch.Tensor) -> None:
        super()._init_from(x)
        empty = self.mask.flatten(1).sum(1) == 0
        self.g[empty] = 1.0


class MaskedWNLinear(_Masked, WNLinear):
    def __init__(self, mask: torch.Tensor, *, init_scale: float = 1.0):
        n_out, n_in = mask.shape
        super().__init__(n_in, n_out, train_g=True, init_scale=init_scale)
        self.register_buffer("mask", mask)


class MaskedWNConv2d(_Masked, WNConv2d):
    def __init__(self, mask: torch.Tensor, *, init_scale: float = 1.0):
        n_out, n_in, k, _ = mask.shape
        super().__init__(n_in, n_out, k, padding=k // 2, train_g=True, init_scale=init_scale)
        self.register_buffer("mask", mask)


# -------------------------------------------------------------------------------------------- IAF


class MADE(nn.Module):
    """[m, s] = AutoregressiveNN(z, h): a MADE over the n variables of z, the context h added to its first hidden
    layer (unmasked: h may depend on anything in x). Dense, or masked 3x3 convolutions over n-channel maps."""

    def __init__(self, n: int, context: int, hidden: list[int], n_outputs: int, reverse: bool, conv: bool):
        super().__init__()
        self.n_outputs = n_outputs
        if conv:
            masks = objective.conv_made_masks(n, hidden, n_outputs, 3, reverse)
            layer, self.context = MaskedWNConv2d, WNConv2d(context, hidden[0], 1, train_g=True)
        else:
            masks = objective.made_masks(n, hidden, n_outputs, reverse)
            layer, self.context = MaskedWNLinear, WNLinear(context, hidden[0], train_g=True)
        self.layers = nn.ModuleList(layer(m) for m in masks[:-1])
        self.out = layer(masks[-1], init_scale=0.1)  # m, s start small: each step starts near the identity

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = F.elu(self.layers[0](z) + self.context(h))
        for layer in self.layers[1:]:
            x = F.elu(layer(x))
        return self.out(x).chunk(self.n_outputs, dim=1)


class IAF(nn.Module):
    """T IAF steps (eq. 14), the variable order reversed between steps; forward(z_0, h) -> (z_T, sum_t log sigma_t)
    element by element, so log q(z_T|x) = log q(z_0|x) - that sum."""

    def __init__(self, n: int, context: int, hp: IAFVAEHparams, conv: bool):
        super().__init__()
        hidden = [hp.iaf_width] * hp.iaf_hidden_layers
        n_out = 2 if hp.iaf_scale else 1
        self.steps = nn.ModuleList(MADE(n, context, hidden, n_out, reverse=t % 2 == 1, conv=conv)
                                   for t in range(hp.iaf_depth))
        self.forget_bias = hp.iaf_forget_bias

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros_like(z)
        for made in self.steps:
            out = made(z, h)
            s = out[1] + self.forget_bias if len(out) == 2 else None
            z, ld = objective.iaf_step(z, out[0], s)
            log_det = log_det + ld
        return z, log_det


# ------------------------------------------------------------------------------------- likelihoods


class Likelihood(nn.Module):
    """p(x|z) from the decoder's output: Bernoulli logits, or the mean of a discretized logistic whose log-scale
    is one learned scalar (as in the paper's code)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        if kind == "logistic":
            self.log_scale = nn.Parameter(torch.zeros(()))

    def encoder_input(self, target: torch.Tensor) -> torch.Tensor:
        """What the encoder sees: the pixels centred on 0 in [-0.5, 0.5]."""
        if self.kind == "bernoulli":
            return target - 0.5
        return (target + 0.5) / objective.N_BINS - 0.5

    def _mean(self, out: torch.Tensor) -> torch.Tensor:
        half_bin = 0.5 / objective.N_BINS
        return (0.5 + out).clamp(half_bin, 1 - half_bin)

    def log_prob(self, target: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per image, summed over the C x H x W dimensions."""
        if self.kind == "bernoulli":
            lp = objective.bernoulli_log_prob(target, out)
        else:
            lp = objective.discretized_logistic_log_prob(target, self._mean(out), self.log_scale)
        return lp.flatten(1).sum(1)

    def image(self, out: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z) as an image in [-1, 1]."""
        mean = torch.sigmoid(out) if self.kind == "bernoulli" else self._mean(out)
        return mean * 2 - 1


# -------------------------------------------------------------------------------------- conv blocks


class ResBlock(nn.Module):
    """Pre-activation ResNet block: x + conv(elu(conv(elu(x)))); a strided 1x1 conv on the skip path when the
    shape changes. The residual branch's last conv starts at scale 0.1 (data-dependent init)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = WNConv2d(c_in, c_out, 3, stride=stride, padding=1, train_g=True)
        self.conv2 = WNConv2d(c_out, c_out, 3, padding=1, train_g=True, init_scale=0.1)
        self.skip = (WNConv2d(c_in, c_out, 1, stride=stride, train_g=True)
                     if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.conv2(F.elu(self.conv1(F.elu(x))))


class CentredWNConv2d(WNConv2d):
    """A conv whose input is the same for every image (the learned top activation of the ResNet VAE): its output
    has no spread across the batch to normalise, so the data-dependent init only centres it (g stays 1)."""

    @torch.no_grad()
    def _init_from(self, x: torch.Tensor) -> None:
        self.b.copy_(-self.apply_weight(x, self.weight(), None).mean((0, 2, 3)))
        self.pending_init = False


class Upsample(nn.Module):
    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.size, mode="nearest")


# ----------------------------------------------------------------------------- single-latent VAEs


def _encoder_decoder(hp: IAFVAEHparams, shape: tuple[int, int, int]) -> tuple[nn.Module, int, nn.Module]:
    """(encoder: x -> features, feature width, decoder: z -> likelihood parameters) for arch mlp or conv."""
    c, h, w = shape
    if hp.arch == "mlp":
        enc: list[nn.Module] = [nn.Flatten()]
        n = c * h * w
        for width in hp.mlp_hidden:
            enc += [WNLinear(n, width, train_g=True), nn.ELU()]
            n = width
        dec: list[nn.Module] = []
        m = hp.z_dim
        for width in reversed(hp.mlp_hidden):
            dec += [WNLinear(m, width, train_g=True), nn.ELU()]
            m = width
        dec += [WNLinear(m, c * h * w, train_g=True, init_scale=0.1), nn.Unflatten(1, shape)]
        return nn.Sequential(*enc), n, nn.Sequential(*dec)

    # conv: the paper's MNIST model. Stages of ResNet blocks, each stage after the first halving the image.
    chans = hp.conv_channels
    sizes = [(h, w)]
    for _ in chans[1:]:
        sizes.append((math.ceil(sizes[-1][0] / 2), math.ceil(sizes[-1][1] / 2)))
    enc = [WNConv2d(c, chans[0], 3, padding=1, train_g=True)]
    for i, ch in enumerate(chans):
        for b in range(hp.conv_blocks):
            first = b == 0 and i > 0
            enc.append(ResBlock(chans[i - 1] if first else ch, ch, stride=2 if first else 1))
    top = chans[-1] * sizes[-1][0] * sizes[-1][1]
    enc += [nn.ELU(), nn.Flatten(), WNLinear(top, hp.conv_dense, train_g=True), nn.ELU()]

    dec = [WNLinear(hp.z_dim, hp.conv_dense, train_g=True), nn.ELU(), WNLinear(hp.conv_dense, top, train_g=True),
           nn.Unflatten(1, (chans[-1], *sizes[-1]))]
    for i in reversed(range(len(chans))):
        for _ in range(hp.conv_blocks):
            dec.append(ResBlock(chans[i], chans[i]))
        if i > 0:
            dec += [Upsample(sizes[i - 1]), ResBlock(chans[i], chans[i - 1])]
    dec += [nn.ELU(), WNConv2d(chans[0], c, 3, padding=1, train_g=True, init_scale=0.1)]
    return nn.Sequential(*enc), hp.conv_dense, nn.Sequential(*dec)


class LatentVAE(nn.Module):
    """A VAE with one latent vector z (arch mlp or conv): q(z|x) a diagonal Gaussian, optionally followed by IAF
    steps that all see the encoder's context h; p(z) = N(0, I); p(x|z) from the decoder."""

    def __init__(self, hp: IAFVAEHparams, shape: tuple[int, int, int]):
        super().__init__()
        self.z_dim, self.groups = hp.z_dim, hp.free_bits_groups or hp.z_dim
        self.likelihood = Likelihood(hp.likelihood)
        self.encoder, features, self.decoder = _encoder_decoder(hp, shape)
        self.context_dim = hp.context_dim if hp.posterior == "iaf" else 0
        self.head = WNLinear(features, 2 * hp.z_dim + self.context_dim, train_g=True, init_scale=0.1)
        self.flow = IAF(hp.z_dim, hp.context_dim, hp, conv=False) if hp.posterior == "iaf" else None

    def forward(self, target: torch.Tensor, k: int = 1) -> dict[str, torch.Tensor]:
        mean, log_std, h = self.head(self.encoder(self.likelihood.encoder_input(target))).split(
            [self.z_dim, self.z_dim, self.context_dim], dim=1)
        if k > 1:
            mean, log_std, h, target = (t.repeat_interleave(k, 0) for t in (mean, log_std, h, target))
        eps = torch.randn_like(mean)
        z = mean + torch.exp(log_std) * eps
        log_q = objective.standard_normal_log_prob(eps) - log_std  # eq. 10 for T = 0
        if self.flow is not None:
            z, log_det = self.flow(z, F.elu(h))
            log_q = log_q - log_det
        kl = (log_q - objective.standard_normal_log_prob(z)).view(len(z), self.groups, -1).sum(2)
        out = self.decoder(z)
        return {"log_px_z": self.likelihood.log_prob(target, out), "kl": kl, "out": out}

    def sample(self, n: int) -> torch.Tensor:
        z = torch.randn(n, self.z_dim, device=self.head.v.device)
        return self.likelihood.image(self.decoder(z))


class ImageDecoder(nn.Module):
    """A latent-vector VAE's decoder as the model users load: z (N x z_dim, prior N(0, I)) -> the mean of p(x|z)
    as images in [-1, 1]."""

    def __init__(self, vae: LatentVAE):
        super().__init__()
        self.decoder, self.likelihood = vae.decoder, vae.likelihood

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.likelihood.image(self.decoder(z))


# ---------------------------------------------------------------------- hierarchical ResNet VAE


class IAFLayer(nn.Module):
    """One stochastic layer of the CIFAR-10 ResNet VAE with bidirectional inference (the paper's figure 3).

    Bottom-up (``up``): a ResNet block whose first conv also gives this layer's posterior part (mean, log-std) and
    up-context. Top-down (``down``): a ResNet block whose first conv gives the prior p(z_l | z_>l), the top-down
    correction of the posterior, a down-context and deterministic features; q = N(mean_up + mean_down,
    exp(logstd_up + logstd_down)) followed by conv IAF steps with context up + down; z joins the features on the
    way down. A layer with ``downsample`` works at half the resolution of its input (up) and output (down).
    """

    def __init__(self, hp: IAFVAEHparams, downsample: bool, top: bool = False):
        super().__init__()
        hc, zc = hp.res_channels, hp.z_dim
        self.hc, self.zc, self.downsample = hc, zc, downsample
        stride = 2 if downsample else 1
        small = dict(padding=1, train_g=True, init_scale=0.1)  # every conv starts at scale 0.1, as the reference's
        self.up_conv1 = WNConv2d(hc, 2 * zc + 2 * hc, 3, stride=stride, **small)
        self.up_conv2 = WNConv2d(hc, hc, 3, **small)
        self.down_conv1 = (CentredWNConv2d if top else WNConv2d)(hc, 4 * zc + 2 * hc, 3, **small)
        self.down_conv2 = WNConv2d(zc + hc, hc, 3, **small)
        self.flow = IAF(zc, hc, hp, conv=True) if hp.posterior == "iaf" else None

    def up(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        q_mean, q_logstd, context, h = self.up_conv1(F.elu(x)).split([self.zc, self.zc, self.hc, self.hc], 1)
        h = self.up_conv2(F.elu(h))
        if self.downsample:
            x = x[:, :, ::2, ::2]
        return x + h, (q_mean, q_logstd, context)

    def down(self, x: torch.Tensor, up: tuple[torch.Tensor, ...] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, KL per stochastic feature map (N, zc)); ``up`` None: sample z from the prior."""
        p_mean, p_logstd, r_mean, r_logstd, context, h_det = self.down_conv1(F.elu(x)).split(
            [self.zc] * 4 + [self.hc] * 2, 1)
        if up is None:
            z = p_mean + torch.exp(p_logstd) * torch.randn_like(p_mean)
            kl = torch.zeros(len(z), self.zc, device=z.device)
        else:
            q_mean, q_logstd, up_context = up
            mean, log_std = q_mean + r_mean, q_logstd + r_logstd
            eps = torch.randn_like(mean)
            z = mean + torch.exp(log_std) * eps
            log_q = objective.standard_normal_log_prob(eps) - log_std
            if self.flow is not None:
                z, log_det = self.flow(z, up_context + context)
                log_q = log_q - log_det
            kl = (log_q - objective.gaussian_log_prob(z, p_mean, p_logstd)).sum((2, 3))
        h = F.elu(torch.cat([z, h_det], 1))
        if self.downsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        return x + self.down_conv2(h), kl


class ResNetVAE(nn.Module):
    """The paper's CIFAR-10 model: an input conv to H/2, levels of IAF layers (the first layer of each later level
    halving the resolution), a learned top activation, the top-down path back through the same layers, and an
    output transposed conv to the likelihood's parameters. Free-bits groups: each layer's stochastic feature maps.
    """

    def __init__(self, hp: IAFVAEHparams, shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = shape
        hc = hp.res_channels
        self.likelihood = Likelihood(hp.likelihood)
        self.x_enc = WNConv2d(c, hc, 5, stride=2, padding=2, train_g=True)
        where = [(i, j) for i, n in enumerate(hp.res_levels) for j in range(n)]
        self.layers = nn.ModuleList(IAFLayer(hp, downsample=i > 0 and j == 0, top=(i, j) == where[-1])
                                    for i, j in where)
        self.h_top = nn.Parameter(torch.zeros(hc))
        self.top_size = (h // 2 ** len(hp.res_levels), w // 2 ** len(hp.res_levels))
        self.x_dec = WNConvTranspose2d(hc, c, 5, stride=2, padding=2, output_padding=1, train_g=True,
                                       init_scale=0.1)

    def _top(self, n: int) -> torch.Tensor:
        return self.h_top.view(1, -1, 1, 1).expand(n, -1, *self.top_size)

    def forward(self, target: torch.Tensor, k: int = 1) -> dict[str, torch.Tensor]:
        h = self.x_enc(self.likelihood.encoder_input(target))
        ups = []
        for layer in self.layers:
            h, up = layer.up(h)
            ups.append(tuple(t.repeat_interleave(k, 0) for t in up) if k > 1 else up)
        if k > 1:
            target = target.repeat_interleave(k, 0)
        h, kls = self._top(len(target)), []
        for layer, up in zip(reversed(self.layers), reversed(ups)):
            h, kl = layer.down(h, up)
            kls.append(kl)
        out = self.x_dec(F.elu(h))
        return {"log_px_z": self.likelihood.log_prob(target, out), "kl": torch.cat(kls, 1), "out": out}

    def sample(self, n: int) -> torch.Tensor:
        h = self._top(n)
        for layer in reversed(self.layers):
            h, _ = layer.down(h, None)
        return self.likelihood.image(self.x_dec(F.elu(h)))


def build(hp: IAFVAEHparams, shape: tuple[int, int, int]) -> nn.Module:
    """The VAE that ``hp.arch`` names, for images of ``shape`` (C, H, W)."""
    if hp.arch == "resnet":
        factor = 2 ** len(hp.res_levels)
        if shape[1] % factor or shape[2] % factor:
            raise ValueError(f"hparams.res_levels: {len(hp.res_levels)} levels need height and width multiples "
                             f"of {factor}, got {shape[1]}x{shape[2]}")
        return ResNetVAE(hp, shape)
    return LatentVAE(hp, shape)
