"""Improved-GAN, semi-supervised with feature matching, and the paper's techniques for sample quality.

Each training step is one D step (labels, unlabeled data and a fresh batch of G's samples, see
:mod:`.objective`), an update of the moving average of D's weights, and ``g_steps`` G steps (feature matching
against D's features of the same real batch and/or an adversarial loss, each on fresh noise). The averaged D is
the test-time classifier. D scores its labeled, unlabeled and generated batches in one forward pass, each batch a
minibatch of its own for the batch-dependent layers (minibatch discrimination, minibatch standard deviation).

Evaluation reports the test error and, with ``sample_scores``, the quality of G's samples (Inception Score / FID
from a local Inception file, or the classifier fallback: :mod:`algorithms.common.sample_quality`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from algorithms.common.ema import EMA
from algorithms.common.gan import HistoricalAverage
from algorithms.common.layers import data_dependent_init
from algorithms.common.schedules import linear_decay, set_lr
from algorithms.improved_gan import objective
from algorithms.improved_gan.hparams import TRAIN_METRICS, ImprovedGANHparams
from algorithms.improved_gan.nets import (
    Classifier,
    ConvDiscriminator,
    ConvGenerator,
    MLPDiscriminator,
    MLPGenerator,
)
from genlab.algorithm import GenerativeAlgorithm
from genlab.context import DataContext

EVAL_BATCH = 500
SCORE_SEED = 1234
"""Seed of the noise that scored samples are drawn from: every evaluation scores G on the same z."""


def build_nets(hp: ImprovedGANHparams, info: DataContext) -> tuple[nn.Module, nn.Module]:
    """The discriminator and generator that ``hp.arch`` names, for images of ``info.shape``."""
    minibatch = dict(kernels=hp.minibatch_kernels, kernel_dim=hp.minibatch_kernel_dim, stddev=hp.minibatch_stddev)
    g_norm = dict(norm=hp.g_norm, n_ref=hp.vbn_reference_size)
    if hp.arch == "mlp":
        d = MLPDiscriminator(info.shape, hp.d_hidden, info.num_classes, hp.input_noise, hp.hidden_noise, minibatch)
        return d, MLPGenerator(hp.z_dim, hp.g_hidden, info.shape, output=hp.g_output, **g_norm)
    _, h, w = info.shape
    if h % 8 or w % 8 or min(h, w) < 16:
        raise ValueError(
            f"hparams.arch: conv needs images whose height and width are multiples of 8 and at least 16 "
            f"(G upsamples from H/8 three times); {info.name or 'this dataset'} has {h}x{w}: use arch mlp"
        )
    d = ConvDiscriminator(info.shape, hp.d_conv, info.num_classes, hp.input_dropout, hp.hidden_dropout,
                          hp.conv_input_noise, minibatch)
    return d, ConvGenerator(hp.z_dim, hp.g_conv, info.shape, **g_norm)


class ImprovedGAN(GenerativeAlgorithm):
    hp: ImprovedGANHparams

    def __init__(self, hparams: ImprovedGANHparams, info: DataContext, device: torch.device | str = "cpu"):
        super().__init__(hparams.resolved(), info, device)
        d, g = build_nets(self.hp, info)
        self.nets = {"D": d.to(self.device), "G": g.to(self.device)}
        self.train_nets = dict(self.nets)
        self.optimizers = {
            k: torch.optim.Adam(net.parameters(), lr=self.hp.lr, betas=(self.hp.beta1, 0.999))
            for k, net in self.nets.items()
        }
        self.ema = EMA(self.nets["D"], self.hp.ema_decay)
        self.history = ({k: HistoricalAverage(net) for k, net in self.nets.items()}
                        if self.hp.hist_avg_weight > 0 else {})
        if "inception" in self.hp.sample_scores:  # fail at the start of the run, not at its first evaluation
            from algorithms.common.inception_weights import problem
            from algorithms.common.sample_quality import MissingWeights

            if problem(self.hp.inception_weights):
                raise MissingWeights(f"hparams.inception_weights: {problem(self.hp.inception_weights)}")
        self.epoch = 0
        self._training_split: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None
        self._scorers: dict | None = None
        self._last_scores: dict[str, float] = {}
        self._real_scores: dict[str, float] = {}

    def _noise(self, n: int) -> torch.Tensor:
        return torch.rand(n, self.hp.z_dim, device=self.device)

    def initialize(self, batch: dict[str, torch.Tensor]) -> None:
        """Data-dependent init of the weight-normalised layers: G on noise, D on the real batch."""
        data_dependent_init(self.nets["G"], self._noise(len(batch["x"])))
        data_dependent_init(self.nets["D"], batch["x"])
        self.ema.reset()
        for h in self.history.values():
            h.reset()

    # --------------------------------------------------------------------------------------- training

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        d, g, hp = self.train_nets["D"], self.train_nets["G"], self.hp
        x, n = batch["x"], len(batch["x"])
        x_lab, y_lab = (batch["x_lab"], batch["y_lab"]) if hp.supervised else (x[:0], None)
        n_lab = len(x_lab)

        with torch.no_grad():
            fake = g(self._noise(n))
        logits, _ = d(torch.cat([x_lab, x, fake]), groups=[n_lab, n, n] if n_lab else [n, n])
        logits_lab, logits_unl, logits_fake = logits.split([n_lab, n, n])
        real_t, fake_t = objective.real_fake_targets(n, n, hp.label_smoothing, hp.label_flip, self.device)
        loss_d, sup, unsup = objective.discriminator_loss(
            logits_lab if hp.supervised else None, y_lab, logits_unl, logits_fake, hp.unlabeled_weight,
            real_target=real_t, fake_target=fake_t,
        )
        extra: dict[str, torch.Tensor] = {}
        if self.history:
            extra["loss/hist_avg_d"] = self.history["D"].penalty()
            loss_d = loss_d + hp.hist_avg_weight * extra["loss/hist_avg_d"]
        self.optimizers["D"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizers["D"].step()
        self.ema.update()
        if self.history:
            self.history["D"].update()

        for _ in range(hp.g_steps):
            loss_g, parts = self._generator_loss(d, g, x)
            self.optimizers["G"].zero_grad(set_to_none=True)
            loss_g.backward()  # also leaves gradients on D, cleared before D's next step
            self.optimizers["G"].step()
            if self.history:
                self.history["G"].update()
        extra.update(parts)
        self.step += 1

        with torch.no_grad():
            values = [
                loss_d, sup, unsup, loss_g,
                objective.real_probability(logits_unl).mean(),
                objective.real_probability(logits_fake).mean(),
                (logits_lab.argmax(dim=1) == y_lab).float().mean() if n_lab else torch.zeros(()),
            ]
            values = torch.stack([v.detach().to(self.device) for v in values + list(extra.values())]).tolist()
        metrics = dict(zip(TRAIN_METRICS + tuple(extra), values))
        if not hp.supervised:  # the -L ablation trains on no labels: no supervised loss or accuracy to report
            del metrics["loss/sup"], metrics["disc/train_accuracy"]
        return metrics

    def _generator_loss(self, d: nn.Module, g: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """G's loss on fresh noise: w_fm * feature matching + adversarial loss (+ historical averaging)."""
        hp, n = self.hp, len(x)
        fake = g(self._noise(n))
        parts: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=self.device)
        if hp.feature_matching > 0:
            logits, features = d(torch.cat([x, fake]), groups=[n, n])
            f_real, f_fake = features.split([n, n])
            logits_fake = logits[n:]
            parts["loss/gen_fm"] = objective.feature_matching_loss(f_real.detach(), f_fake, hp.fm_distance)
            loss = loss + hp.feature_matching * parts["loss/gen_fm"]
        else:
            logits_fake, _ = d(fake)
        if hp.adversarial_loss != "none":
            parts["loss/gen_adv"] = objective.generator_adversarial_loss(logits_fake, hp.adversarial_loss)
            loss = loss + parts["loss/gen_adv"]
        if self.history:
            parts["loss/hist_avg_g"] = self.history["G"].penalty()
            loss = loss + hp.hist_avg_weight * parts["loss/hist_avg_g"]
        if len(parts) == 1 and "loss/hist_avg_g" not in parts:
            parts = {}  # G's loss is one term: loss/gen says it all
        return loss, parts

    # --------------------------------------------------------------------------------------- evaluation

    def set_evaluation_data(self, training_split: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> None:
        """The training split, for the sample scores' reference statistics and the fallback score classifier
        (converted at the first scoring, never without ``sample_scores``)."""
        self._training_split = training_split

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        d = self.nets["D"].eval()
        wrong_ema = wrong_raw = torch.zeros((), device=self.device)
        for xb, yb in zip(x.split(EVAL_BATCH), y.split(EVAL_BATCH)):
            wrong_ema = wrong_ema + (self.ema.average(xb)[0].argmax(dim=1) != yb).sum()
            wrong_raw = wrong_raw + (d(xb)[0].argmax(dim=1) != yb).sum()
        d.train()
        error, error_raw = (torch.stack([wrong_ema, wrong_raw]) / len(y)).tolist()
        out = {"eval/test_error": error, "eval/test_accuracy": 1.0 - error, "eval/test_error_raw": error_raw}
        if self.hp.sample_scores:
            if not self._last_scores or self.hp.score_every == 0 or self.epoch % self.hp.score_every == 0:
                self._last_scores = self.sample_scores(x, y)
            out.update(self._last_scores)
        return out

    def sample_scores(self, test_x: torch.Tensor, test_y: torch.Tensor) -> dict[str, float]:
        """The scores of ``score_samples`` samples (the same noise every time) against the training split, and,
        computed once, the scores of the held-out real images (and the score classifier's test accuracy)."""
        scorers = self._build_scorers()
        samples = self._score_samples()
        out = {}
        for kind, scorer in scorers.items():
            names = {"classifier": ("eval/classifier_score", "eval/classifier_score_std", "eval/fcd"),
                     "inception": ("eval/inception_score", "eval/inception_score_std", "eval/fid")}[kind]
            out.update(zip(names, scorer.score(samples)))
            if kind not in self._real_scores:
                logits, _ = scorer.features(test_x.cpu())
                self._real_scores[kind] = {f"eval/{kind}_score_real":
                                           _score_mean(logits, self.hp.score_splits)}
                if kind == "classifier":
                    acc = (logits.argmax(dim=1) == test_y.cpu()).float().mean().item()
                    self._real_scores[kind]["eval/score_classifier_accuracy"] = acc
            out.update(self._real_scores[kind])
        return out

    def _build_scorers(self) -> dict:
        if self._scorers is not None:
            return self._scorers
        if self._training_split is None:
            raise RuntimeError("hparams.sample_scores needs the training split: call set_evaluation_data(training_"
                               "split) before evaluating (the generative runner does)")
        from algorithms.common import sample_quality as sq

        train_x, train_y = self._training_split()
        self._scorers = {}
        for kind in self.hp.sample_scores:
            if kind == "classifier":
                net, _ = sq.cached_score_classifier(train_x, train_y, self.info.num_classes,
                                                    steps=self.hp.score_classifier_steps, device=self.device,
                                                    name=self.info.name or "data")
                features = net.features
            else:
                features = sq.InceptionFeatures(self.hp.inception_weights, self.device)
            self._scorers[kind] = sq.SampleScorer(features, train_x, self.hp.score_splits)
        return self._scorers

    @torch.no_grad()
    def _score_samples(self) -> torch.Tensor:
        g = self.nets["G"].eval()
        z = torch.rand(self.hp.score_samples, self.hp.z_dim, generator=torch.Generator().manual_seed(SCORE_SEED))
        images = torch.cat([g(zb.to(self.device)).cpu() for zb in z.split(EVAL_BATCH)])
        g.train()
        return images

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
        self.epoch = epoch
        set_lr(self.optimizers, linear_decay(self.hp.lr, epoch, self.hp.lr_decay_start, self.hp.lr_decay_epochs))

    def extra_state(self) -> dict:
        state = {"ema": self.ema.state_dict()}
        if self.history:
            state["history"] = {k: h.state_dict() for k, h in self.history.items()}
        return state

    def load_extra_state(self, state: dict) -> None:
        self.ema.load_state_dict(state["ema"])
        for k, h in self.history.items():
            h.load_state_dict(state["history"][k])


def _score_mean(logits: torch.Tensor, splits: int) -> float:
    from algorithms.common.sample_quality import score_from_logits

    return score_from_logits(logits, splits)[0]
