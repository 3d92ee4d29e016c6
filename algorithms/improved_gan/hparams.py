"""Hyperparameters of Improved-GAN (the semi-supervised K+1 GAN, the techniques for sample quality, sample scores).

Imports pydantic and the standard library only."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from algorithms.common import inception_weights
from genlab.context import RunContext
from genlab.hparams import Hparams

Fraction = Annotated[float, Field(ge=0, lt=1)]
"""A float in [0, 1)."""


TRAIN_METRICS = ("loss/disc", "loss/sup", "loss/unsup", "loss/gen",
                 "disc/real_prob", "disc/fake_prob", "disc/train_accuracy")
OPTIONAL_TRAIN_METRICS = ("loss/gen_fm", "loss/gen_adv", "loss/hist_avg_d", "loss/hist_avg_g")
"""Reported by the steps that compute them: both parts of G's loss when both are on, the historical-averaging
penalties (unweighted) when it is on."""
EVAL_METRICS = ("eval/test_error", "eval/test_accuracy", "eval/test_error_raw")
CLASSIFIER_SCORE_METRICS = ("eval/classifier_score", "eval/fcd", "eval/classifier_score_std",
                            "eval/classifier_score_real", "eval/score_classifier_accuracy")
"""sample_scores [classifier]: the Inception-Score formula and the Frechet distance in the logits / features of a
small classifier genlab trains on the training split (NOT Inception); the score of held-out real images; that
classifier's test accuracy."""
INCEPTION_METRICS = ("eval/inception_score", "eval/fid", "eval/inception_score_std", "eval/inception_score_real")
"""sample_scores [inception]: Inception Score and FID with torch-fidelity's Inception v3 (weights from a local file)."""

ABLATIONS = {
    "full": {},
    "-MBF": {"minibatch_kernels": 0},
    "-LS": {"label_smoothing": 1.0},
    "-VBN+BN": {"g_norm": "batch"},
    "-L": {"supervised": False},
    "-L+HA": {"supervised": False},
}
"""Table 3 of the paper: what each variant changes in the full model (which the spec sets); only -L+HA keeps
historical averaging."""


class ImprovedGANHparams(Hparams):
    metrics: ClassVar[tuple[str, ...]] = (EVAL_METRICS[:1] + CLASSIFIER_SCORE_METRICS[:2] + INCEPTION_METRICS[:2]
                                          + EVAL_METRICS[1:] + TRAIN_METRICS + OPTIONAL_TRAIN_METRICS
                                          + CLASSIFIER_SCORE_METRICS[2:] + INCEPTION_METRICS[2:])
    progress: ClassVar[tuple[str, ...]] = tuple(m for m in metrics if m.startswith(("eval/", "loss/")))
    uses_labels: ClassVar[bool] = True

    arch: Literal["mlp", "conv"] = "mlp"
    """`mlp`: the paper's MNIST model (noise-regularised WN MLP D); `conv`: its CIFAR-10/SVHN conv nets."""
    z_dim: PositiveInt = 100
    """Size of the generator's uniform noise z ~ U[0, 1)."""
    d_hidden: list[PositiveInt] = [1000, 500, 250, 250, 250]
    """mlp: widths of D's hidden weight-normalised dense layers; the last one gives the matched features."""
    g_hidden: list[PositiveInt] = [500, 500]
    """mlp: widths of G's dense + batch-norm + softplus layers."""
    g_output: Literal["tanh", "sigmoid"] = "tanh"
    """mlp: G's output stage. "sigmoid": the MNIST reference code's (a weight-normalised dense layer at scale 1, no
    data-dependent init, then a sigmoid, mapped to genlab's [-1, 1] pixels); on real MNIST digits "tanh" (a
    data-dependent init, then tanh: about 4 times the step per Adam update) collapsed G within 20 steps. "tanh" is what
    the digits specs were tuned and measured with."""
    d_conv: tuple[PositiveInt, PositiveInt, PositiveInt] = (96, 192, 192)
    """conv: D channels of the first 3x3 block, the second 3x3 block, and the valid-3x3/1x1/1x1 head."""
    g_conv: tuple[PositiveInt, PositiveInt, PositiveInt] = (512, 256, 128)
    """conv: G channels at H/8 (from the dense layer), H/4 and H/2 (after each 5x5 stride-2 deconv)."""
    input_noise: NonNegativeFloat = 0.3
    """mlp: std of the Gaussian noise added to D's input in training, on genlab's pixels in [-1, 1] (the MNIST
    reference code's 0.3 is on pixels in [0, 1]: 0.6 here)."""
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
    conv_input_noise: NonNegativeFloat = 0.0
    """conv: std of Gaussian noise on D's input (the code's minibatch-discrimination models: 0.2, no input dropout)."""

    # --- techniques for sample quality (section 3 of the paper); off by default, as in its semi-supervised models
    feature_matching: NonNegativeFloat = 1.0
    """Weight of feature matching in G's loss (section 3.1); 0 = off (the paper's sample-quality models)."""
    adversarial_loss: Literal["none", "minimax", "non_saturating"] = "none"
    """G's adversarial loss, added to feature matching: `minimax` E log(1 - D(G(z))) (the code's minibatch models),
    `non_saturating` -E log D(G(z)); `none` = feature matching alone."""
    g_steps: PositiveInt = 1
    """G updates per D update, each on fresh noise (the code's minibatch-discrimination models: 3)."""
    minibatch_kernels: NonNegativeInt = 0
    """Minibatch discrimination (section 3.2): B, the number of kernels (paper: 100; 300 with 50 dims); 0 = off."""
    minibatch_kernel_dim: PositiveInt = 5
    """Minibatch discrimination: C, the dimensions of each kernel (paper: 5; 50 with 300 kernels)."""
    minibatch_stddev: bool = False
    """Beyond the paper: append the batch's mean feature standard deviation to D's features (Karras et al. 2018)."""
    label_smoothing: float = Field(default=1.0, gt=0.5, le=1.0)
    """One-sided label smoothing (section 3.4): alpha, the target of real examples in D's real/fake loss
    (paper: 0.9); 1 = off. Generated examples keep target 0."""
    label_flip: Annotated[float, Field(ge=0, lt=0.5)] = 0.0
    """Beyond the paper: label noise, the probability of swapping an example's real/fake target in D's loss."""
    hist_avg_weight: NonNegativeFloat = 0.0
    """Historical averaging (section 3.3): weight of ||theta - mean of past theta||^2 in D's and G's loss; 0 = off."""
    g_norm: Literal["batch", "virtual_batch"] = "batch"
    """G's normalisation: batch norm, or virtual batch norm (section 3.5) on a reference batch fixed at the start."""
    vbn_reference_size: PositiveInt = 100
    """Virtual batch norm: size of G's reference noise batch (run in front of every batch)."""
    supervised: bool = True
    """False: the paper's "-L" ablation, D trained on the real/fake loss alone (the labels are not used)."""
    ablation: Literal["full", "-MBF", "-LS", "-VBN+BN", "-L", "-L+HA"] | None = None
    """Table 3 of the paper: the spec sets the full model (minibatch discrimination, label smoothing, virtual
    batch norm, labels) and this removes one technique: -MBF, -LS, -VBN+BN (batch norm), -L (no labels), -L+HA (no
    labels, historical averaging with hist_avg_weight, which the other variants do not use). None = as set."""

    # --- sample quality, measured at evaluations
    sample_scores: list[Literal["classifier", "inception"]] = []
    """Scores of G's samples: `inception` = Inception Score + FID (torch-fidelity, weights from a local file);
    `classifier` = the same formulas with a small classifier genlab trains on the training split (no file needed)."""
    score_every: NonNegativeInt = 0
    """Score samples at evaluations whose epoch is a multiple of this (a multiple of budget.eval_every that divides
    budget.epochs); 0 = at every evaluation. Evaluations in between report the latest scores."""
    score_samples: PositiveInt = 5000
    """Generated images per score (the paper: 50000)."""
    score_splits: PositiveInt = 10
    """Inception/classifier score: mean and std over this many splits of the samples (the paper: 10)."""
    inception_weights: str | None = None
    """Inception v3 weights file (torch-fidelity's weights-inception-2015-12-05-6726825d.pth); default
    $GENLAB_INCEPTION_WEIGHTS. Resolved when the spec loads; nothing is downloaded at run time."""
    score_classifier_steps: PositiveInt = 2000
    """Training steps of the score classifier (seeded, cached under $GENLAB_CACHE or ~/.genlab/cache)."""

    @field_validator("sample_scores")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"lists a score twice: {v}")
        return v

    @field_validator("inception_weights")
    @classmethod
    def _expand(cls, v: str | None) -> str | None:
        return inception_weights.expand(v) if v else v

    def resolved(self) -> ImprovedGANHparams:
        """The settings the algorithm trains with: ``ablation``'s variant applied to the spec's full model."""
        if self.ablation is None:
            return self
        changes = {**ABLATIONS[self.ablation], "ablation": None}
        if self.ablation != "-L+HA":
            changes["hist_avg_weight"] = 0.0
        return self.model_copy(update=changes)

    def unreported(self) -> dict[str, str]:
        hp, out = self.resolved(), {}
        for score, names in (("inception", INCEPTION_METRICS), ("classifier", CLASSIFIER_SCORE_METRICS)):
            if score not in hp.sample_scores:
                out.update(dict.fromkeys(names, f"hparams.sample_scores: [{score}]"))
        both = hp.feature_matching > 0 and hp.adversarial_loss != "none"
        for metric, on, setting in (("loss/gen_fm", both, "hparams.feature_matching > 0 with an adversarial_loss"),
                                    ("loss/gen_adv", both, "hparams.adversarial_loss with feature_matching > 0"),
                                    ("loss/hist_avg_d", hp.hist_avg_weight > 0, "hparams.hist_avg_weight > 0"),
                                    ("loss/hist_avg_g", hp.hist_avg_weight > 0, "hparams.hist_avg_weight > 0")):
            if not on:
                out[metric] = setting
        return out

    def check(self, ctx: RunContext) -> list[str]:
        """The score cadence must fit the budget, so that the last model is scored."""
        problems = []
        if self.sample_scores and self.score_every:
            if self.score_every % ctx.eval_every:
                problems.append(f"hparams.score_every: {self.score_every} is not a multiple of budget.eval_every "
                                f"({ctx.eval_every}); samples are scored at evaluations only")
            if ctx.epochs % self.score_every:
                problems.append(f"hparams.score_every: {self.score_every} does not divide budget.epochs "
                                f"({ctx.epochs}), so the last model would not be scored; choose a divisor")
        return problems

    def check_files(self, ctx: RunContext) -> list[str]:
        """The Inception weights file must exist on this machine before anything starts."""
        if "inception" in self.sample_scores:
            problem = inception_weights.problem(self.inception_weights)
            if problem:
                return [f"hparams.inception_weights: {problem}"]
        return []

    @model_validator(mode="after")
    def _consistent(self) -> ImprovedGANHparams:
        if self.arch == "mlp" and not self.d_hidden:
            raise ValueError("d_hidden: the mlp discriminator needs at least one hidden layer (its features)")
        if self.arch == "mlp" and not self.g_hidden:
            raise ValueError("g_hidden: the mlp generator needs at least one hidden layer")
        if self.feature_matching == 0 and self.adversarial_loss == "none":
            raise ValueError("feature_matching: 0 with adversarial_loss none leaves G without a loss; set "
                             "feature_matching > 0 or adversarial_loss minimax / non_saturating")
        if self.ablation is not None:
            missing = [f"{field} ({why})" for field, why, off in (
                ("minibatch_kernels", "e.g. 100", self.minibatch_kernels == 0),
                ("label_smoothing", "e.g. 0.9", self.label_smoothing == 1.0),
                ("g_norm", "virtual_batch", self.g_norm != "virtual_batch"),
                ("supervised", "true", not self.supervised),
                ("hist_avg_weight", "> 0, the weight -L+HA uses", self.hist_avg_weight == 0),
            ) if off]
            if missing:
                raise ValueError(f"ablation: {self.ablation} removes one technique from the full model that the spec "
                                 f"sets, but the spec leaves off: {', '.join(missing)}")
        if self.score_samples < 2 * self.score_splits:
            raise ValueError(f"score_samples: {self.score_samples} samples cannot fill {self.score_splits} splits "
                             "(score_splits) of at least 2; raise score_samples or lower score_splits")
        if self.inception_weights is None and "inception" in self.sample_scores:
            self.inception_weights = inception_weights.from_env()
        if self.lr_decay_start > 0 and self.lr_decay_epochs == 0:
            raise ValueError(
                f"lr_decay_start: {self.lr_decay_start} has no effect while lr_decay_epochs is 0; "
                "set lr_decay_epochs to the length of the decay"
            )
        return self
