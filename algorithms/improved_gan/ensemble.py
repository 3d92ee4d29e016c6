"""The paper's ensemble row (Table 1, MNIST with 100 labels: 86 test errors for an ensemble of 10 models): the
average of the class probabilities of N trained models' averaged (EMA) classifiers,

    p_ens(y | x) = (1/N) sum_n softmax(l^(n)(x))_y,     prediction argmax_y p_ens(y | x).

Each model is a checkpoint of the generative runner (``state.pt``: ``{"algo": ImprovedGAN.state_dict(), ...}``,
or the algorithm's state dict itself) and the hyperparameters it was trained with. Pure torch: loading the test
images is the caller's (``scripts/improved_gan_ensemble.py`` reads a spec and its dataset).
"""

from __future__ import annotations

from pathlib import Path

import torch

from algorithms.improved_gan.algorithm import EVAL_BATCH, ImprovedGAN
from algorithms.improved_gan.hparams import ImprovedGANHparams
from genlab.context import DataContext


def load_classifier(state: dict | str | Path, hparams: ImprovedGANHparams, info: DataContext,
                    device: torch.device | str = "cpu") -> torch.nn.Module:
    """The averaged (EMA) discriminator of one checkpoint: the test-time classifier, in eval mode."""
    if not isinstance(state, dict):
        state = torch.load(state, map_location=device, weights_only=False)
    state = state.get("algo", state)
    algo = ImprovedGAN(hparams, info, device)
    algo.load_state_dict(state)
    return algo.ema.average.eval()


@torch.no_grad()
def ensemble_probabilities(classifiers: list[torch.nn.Module], x: torch.Tensor) -> torch.Tensor:
    """(1/N) sum_n softmax of classifier n's K logits, per image of ``x``."""
    if not classifiers:
        raise ValueError("an ensemble needs at least one classifier")
    out = []
    for xb in x.split(EVAL_BATCH):
        out.append(torch.stack([c(xb)[0].softmax(dim=1) for c in classifiers]).mean(dim=0))
    return torch.cat(out)


def ensemble_test_error(classifiers: list[torch.nn.Module], x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The ensemble's test error and error count, and each member's error (for the mean +- std row)."""
    wrong = (ensemble_probabilities(classifiers, x).argmax(dim=1) != y).sum().item()
    members = [(ensemble_probabilities([c], x).argmax(dim=1) != y).float().mean().item() for c in classifiers]
    return {"ensemble_error": wrong / len(y), "ensemble_errors": int(wrong), "member_errors": members}
