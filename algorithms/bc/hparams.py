"""Hyperparameters of the behavior-cloning baseline. Imports pydantic only."""

from __future__ import annotations

from pydantic import PositiveFloat, PositiveInt

from genlab.hparams import Hparams


class BCHparams(Hparams):
    local_cpus = 2  # RLlib reads the demonstrations with Ray Data: a read task and a batch actor of 1 CPU each
    lr: PositiveFloat = 1e-3
    """Adam learning rate of the policy."""
    train_batch_size: PositiveInt = 512
    """Expert transitions per gradient step."""
    updates_per_iteration: PositiveInt = 20
    """Gradient steps per training iteration (RLlib's dataset_num_iters_per_learner)."""
    policy_hiddens: list[PositiveInt] = [64, 64]
    """Hidden layer widths of the policy MLP (the same as GAIL's policy, for a fair comparison)."""
