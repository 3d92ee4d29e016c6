"""The contract between the platform and a generative algorithm.

An algorithm is a small object the platform drives. It knows nothing of Ray, Tune, MLflow or the
cluster: it is built from its typed hyperparameters and the dataset's shape, and it exposes

- ``nets``: its ``nn.Module`` s by name (the platform checkpoints them and wraps them in DDP);
- ``train_nets``: what ``train_step`` calls; the platform replaces them with DDP wrappers through
  :meth:`distribute` when there is more than one worker;
- ``optimizers``: by name, checkpointed with the nets;
- ``initialize(batch)``: optional data-dependent init (weight norm), run once before distribution;
- ``set_evaluation_data(training_split)``: optional, the training split for evaluation-only uses, as a function
  that converts it when called (the platform holds images as uint8);
- ``train_step(batch) -> dict[str, float]``, ``evaluate(x, y) -> dict[str, float]``;
- ``images() -> {name: ImageGrid}``: the pictures to log at each evaluation (default: a grid of
  ``sample(100)`` named ``samples``; InfoGAN adds traversals, a VAE reconstructions);
- ``models() -> {name: (module, example_input)}``: the trained networks worth loading on their own (a generator
  from noise, a classifier from images), logged as MLflow models at the end of a run;
- ``extra_state()`` / ``load_extra_state()`` for anything else worth checkpointing (an EMA).

What the platform must know *before* it builds the algorithm lives on the method's hyperparameter class
(its ``hparams.py``, which imports pydantic only), as class variables of :class:`genlab.hparams.Hparams`:
the metric names the method reports (``metrics``), its progress line (``progress``) and whether it trains on
labels (``uses_labels``). Of its data it is told a :class:`genlab.context.DataContext` (shape, classes, name).

A batch is a dict of tensors on the algorithm's device: ``x`` (images, N x C x H x W in [-1, 1]) and,
for methods that use labels (semi-supervised), ``x_lab`` and ``y_lab``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from genlab.context import DataContext


@dataclass(frozen=True)
class ImageGrid:
    """Images in [-1, 1] (N x C x H x W) laid out ``nrow`` to a row (default: a square)."""

    images: torch.Tensor
    nrow: int | None = None


class GenerativeAlgorithm(ABC):
    def __init__(self, hparams, info: DataContext, device: torch.device | str = "cpu"):
        self.hp = hparams
        self.info = info
        self.device = torch.device(device)
        self.nets: dict[str, nn.Module] = {}
        self.train_nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.step = 0

    # --- what the platform calls -------------------------------------------------------------
    def initialize(self, batch: dict[str, torch.Tensor]) -> None:  # noqa: B027 - optional hook
        """Data-dependent initialisation from the first batch (default: nothing)."""

    def set_evaluation_data(self, training_split: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> None:  # noqa: B027
        """The whole training split with all its labels, for evaluation metrics that need real data besides the
        test set (e.g. a sample-quality classifier, reference statistics of real images): given once before
        training as a function that returns ``(train_x, train_y)``, images as float32 in [-1, 1] like a batch's.
        Calling it converts the stored uint8 split to float (4x its size): call it only when needed, once.
        Training must not read it: a method's training data comes in the batches. Default: ignored."""

    def distribute(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Replace the nets used for training by ``wrap(net)`` (DDP); evaluation uses ``nets``."""
        self.train_nets = {k: wrap(v) for k, v in self.nets.items()}

    @abstractmethod
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]: ...

    @abstractmethod
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Metrics on the held-out images ``x`` (labels ``y``, which only evaluation may use)."""

    @abstractmethod
    def sample(self, n: int) -> torch.Tensor:
        """``n`` generated images in [-1, 1]."""

    def images(self) -> dict[str, ImageGrid]:
        """The pictures logged at each evaluation, by name (each goes to ``<name>/epoch_NNNN.png``)."""
        return {"samples": ImageGrid(self.sample(100))}

    def models(self) -> dict[str, tuple[nn.Module, torch.Tensor]]:
        """The trained networks a user may want on their own, by name, each with an example input: the platform
        logs them as MLflow models (``mlflow.pytorch.load_model("runs:/<run id>/<name>")``). Default: none."""
        return {}

    def end_epoch(self, epoch: int) -> None:  # noqa: B027 - optional hook
        """Called after each epoch (learning-rate schedules)."""

    # --- checkpointing ------------------------------------------------------------------------
    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:  # noqa: B027 - optional hook
        pass

    def state_dict(self) -> dict:
        return {
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "step": self.step,
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        for k, v in state["nets"].items():
            self.nets[k].load_state_dict(v)
        for k, v in state["optimizers"].items():
            self.optimizers[k].load_state_dict(v)
        self.step = state["step"]
        self.load_extra_state(state.get("extra", {}))
