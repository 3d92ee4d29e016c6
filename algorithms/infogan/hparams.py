"""Hyperparameters of InfoGAN: the latent codes as data, the λ of each code type, the nets. Imports pydantic only."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from genlab.context import RunContext
from genlab.hparams import Hparams

Fraction = Annotated[float, Field(ge=0, lt=1)]
"""A float in [0, 1)."""
ARCH_MULTIPLE = {"mnist": 4, "color": 16}
"""Conv nets: the image height and width must be multiples of this (G starts from an H/m x W/m grid)."""

TRAIN_METRICS = ("loss/disc", "loss/gen", "loss/info", "disc/real_prob", "disc/fake_prob", "gen/mi_bound")
EVAL_METRICS = ("eval/cat_accuracy", "eval/mi_bound", "eval/entropy", "eval/mi_bound_cat", "eval/entropy_cat",
                "eval/mi_bound_cont", "eval/entropy_cont", "eval/cat_accuracy_best", "eval/cont_std")


class LatentCodes(BaseModel):
    """The generator's input: the codes c whose mutual information with G(z, c) is maximised, and the noise z."""

    model_config = ConfigDict(extra="forbid")

    categorical: list[Annotated[int, Field(ge=2)]] = [10]
    """The number of values K of each categorical code (uniform over K, one-hot into G); [] = none."""
    continuous: NonNegativeInt = 2
    """How many continuous codes, each uniform on [-1, 1]."""
    noise: NonNegativeInt = 62
    """Size of the incompressible noise z."""
    noise_dist: Literal["uniform", "normal"] = "uniform"
    """z ~ U[-1, 1] (the reference code) or N(0, 1)."""

    @model_validator(mode="after")
    def _some_code(self) -> LatentCodes:
        if not self.categorical and self.continuous == 0:
            raise ValueError("no latent codes: InfoGAN needs at least one categorical code (categorical: [K]) or "
                             "one continuous code (continuous: n); without codes it is a plain GAN")
        return self


class InfoGANHparams(Hparams):
    metrics: ClassVar[tuple[str, ...]] = EVAL_METRICS + TRAIN_METRICS
    progress: ClassVar[tuple[str, ...]] = tuple(m for m in metrics if m.startswith(("eval/", "loss/")))
    uses_labels: ClassVar[bool] = False

    codes: LatentCodes = Field(default_factory=LatentCodes)
    """The latent codes and the noise (the paper's MNIST: one 10-way categorical, 2 continuous, 62 noise)."""
    lambda_cat: NonNegativeFloat = 1.0
    """λ of the categorical codes' mutual-information term (paper: 1)."""
    lambda_cont: NonNegativeFloat = 0.1
    """λ of the continuous codes' term (paper: smaller than 1, as their differential entropy has another scale)."""
    mi_to_generator: bool = True
    """False: the plain-GAN baseline of the paper's Fig. 1: Q still learns to read the codes, G gets no MI term."""
    cont_std: Literal["learned", "fixed"] = "learned"
    """Q's factored Gaussian for continuous codes: learned std per code, or a fixed one (the reference code's)."""
    cont_fixed_std: PositiveFloat = 1.0
    """The std when cont_std is fixed (reference code: 1)."""
    arch: Literal["mlp", "mnist", "color"] = "mlp"
    """`mnist`: the paper's MNIST nets (Table 1); `color`: its SVHN/CelebA nets (Tables 2-3); `mlp`: a small dense
    pair for the 8x8 digits."""
    mlp_d_hidden: list[PositiveInt] = [256, 256]
    """mlp: widths of D's shared dense layers (leaky ReLU 0.1, batch norm after the first)."""
    mlp_g_hidden: list[PositiveInt] = [256, 256]
    """mlp: widths of G's dense + batch-norm + ReLU layers."""
    q_hidden: PositiveInt = 128
    """Width of Q's own dense layer on D's shared features (paper: 128)."""
    lr_d: PositiveFloat = 2e-4
    """Adam learning rate of D and its shared trunk (paper: 2e-4)."""
    lr_g: PositiveFloat = 1e-3
    """Adam learning rate of G (paper: 1e-3)."""
    lr_q: PositiveFloat = 1e-3
    """Adam learning rate of Q's own head (paper: 1e-3, as G's)."""
    beta1: Fraction = 0.5
    """Adam beta1 of every optimizer."""
    eval_samples: PositiveInt = 2000
    """Generated samples that estimate the MI bound at each evaluation."""

    def unreported(self) -> dict[str, str]:
        out = {}
        if not self.codes.categorical:
            out.update(dict.fromkeys(("eval/cat_accuracy", "eval/cat_accuracy_best"),
                                     "a categorical code (hparams.codes.categorical: [10]) and a labeled dataset"))
        if not self.codes.continuous:
            out["eval/cont_std"] = "continuous codes (hparams.codes.continuous: 2)"
        return out

    def check(self, ctx: RunContext) -> list[str]:
        """The conv nets halve the image size 2 (mnist) or 4 (color) times in G's upsampling path."""
        name = ctx.data.name
        _, h, w = ctx.data.shape
        need = ARCH_MULTIPLE.get(self.arch)
        if need and (h % need or w % need):
            fits = [n for n, (_, hh, ww) in ctx.data.shapes.items() if hh % need == 0 and ww % need == 0]
            return [f"hparams.arch: {self.arch} nets need images whose height and width are multiples of {need} "
                    f"(G doubles its grid {need.bit_length() - 1} times); {name} is {h}x{w}: use arch mlp, or one "
                    f"of the datasets {', '.join(fits)}"]
        return []
