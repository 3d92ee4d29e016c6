"""PPO's epochs of minibatch updates as one tight loop inside the Learner (opt-in: GAIL's learner uses it).

RLlib's ``Learner.update`` slices the train batch into minibatches with its cyclic iterator (``SampleBatch`` slicing
and concatenation) and, around each minibatch's gradient step, logs RLlib's per-minibatch bookkeeping (steps
trained, the batch's off-policyness, Ray's Prometheus timers). With small networks and many small minibatches (the
GAIL Pendulum spec: 640 updates of 64 per 2048 env steps) that bookkeeping costs about as much as the gradient step
itself (tests/benchmarks/bench_gail_profile.py). :class:`MinibatchLoop` hands RLlib the whole batch as one update and
runs the epochs inside it (``_update``, RLlib's override point for the update step): per epoch a fresh permutation of
the batch's valid rows (``LOSS_MASK``; the bootstrap rows PPO appends carry no loss), cut into ``minibatch_size``
slices as RLlib's cyclic iterator cuts them, each through the policy's forward pass and the Learner's own
``compute_losses`` (PPO's loss and any auxiliary module's), ``compute_gradients`` and ``postprocess_gradients``, then
the optimizer steps (:meth:`MinibatchLoop.step`). The math per minibatch is RLlib's; what goes is the per-minibatch
bookkeeping (RLlib logs the steps trained once per iteration), setting train mode on every module at every forward
pass, and a NaN check per parameter per step.
The policy's optimizer is torch's fused Adam (the same update in one kernel call per step).
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core import DEFAULT_MODULE_ID, Columns


class MinibatchLoop:
    """Learner mixin (list it before the framework learner: ``class L(MinibatchLoop, PPOTorchLearner)``)."""

    minibatch_loop: bool = True
    """False: RLlib's own minibatch iteration (set on a learner to compare the two)."""

    def update(self, *args, num_epochs: int = 1, minibatch_size: int | None = None, **kwargs) -> Any:
        """RLlib's update with the whole batch as its one "minibatch"; :meth:`_update` runs the epochs."""
        if not (minibatch_size and self.minibatch_loop):
            self.epoch_loop = None
            return super().update(*args, num_epochs=num_epochs, minibatch_size=minibatch_size, **kwargs)
        self.epoch_loop = (num_epochs, minibatch_size)
        kwargs.pop("shuffle_batch_per_epoch", None)  # every epoch is shuffled here
        return super().update(*args, num_epochs=1, minibatch_size=None, **kwargs)

    def _update(self, batch: dict[str, Any], **kwargs) -> tuple[Any, Any, Any]:
        loop = getattr(self, "epoch_loop", None)
        if loop is None or set(batch) != {DEFAULT_MODULE_ID}:
            return super()._update(batch, **kwargs)
        num_epochs, minibatch_size = loop
        columns = {k: v for k, v in batch[DEFAULT_MODULE_ID].items() if isinstance(v, torch.Tensor)}
        valid = columns.pop(Columns.LOSS_MASK, None)  # without it, PPO's loss means over every row
        if valid is not None:
            columns = {k: v[valid] for k, v in columns.items()}
        n = len(columns[Columns.OBS])
        order = torch.cat([torch.randperm(n) for _ in range(num_epochs)])
        policy = self.module[DEFAULT_MODULE_ID]
        policy.train()  # once: RLlib's forward_train sets train mode (on every submodule) at every call
        forward = policy.forward_train if self.config.num_learners > 1 else policy._forward_train  # DDP: its own
        for i in range(max(1, num_epochs * n // minibatch_size)):
            idx = order[i * minibatch_size:(i + 1) * minibatch_size]
            minibatch = {DEFAULT_MODULE_ID: {k: v[idx] for k, v in columns.items()}}
            fwd_out = {DEFAULT_MODULE_ID: forward(minibatch[DEFAULT_MODULE_ID])}
            losses = self.compute_losses(fwd_out=fwd_out, batch=minibatch)
            self.step(losses)
        return fwd_out, losses, {}

    def step(self, losses: dict[str, torch.Tensor]) -> None:
        """One gradient step on ``losses`` (module id -> loss): RLlib's backward pass and gradient postprocessing
        (clipping), then the optimizers of the modules with a loss here. RLlib's ``apply_gradients`` steps every
        optimizer and checks each gradient for NaN/inf separately; here one check of the losses does, and a
        non-finite one goes through RLlib's ``apply_gradients`` (which zeroes such gradients and warns)."""
        grads = self.postprocess_gradients(self.compute_gradients(losses))
        if not torch.isfinite(torch.stack([loss.detach() for loss in losses.values()])).all():
            self.apply_gradients(grads)
            return
        for module_id in losses:
            for _, optimizer in self.get_optimizers_for_module(module_id):
                optimizer.step()

    def configure_optimizers_for_module(self, module_id: str, config=None) -> None:
        """The policy's Adam, fused (RLlib's default steps each parameter in a Python loop); other modules
        as the classes after this one in the MRO configure them."""
        if module_id != DEFAULT_MODULE_ID:
            return super().configure_optimizers_for_module(module_id, config)
        params = self.get_parameters(self.module[module_id])
        self.register_optimizer(module_id=module_id, optimizer=torch.optim.Adam(params, fused=True), params=params,
                                lr_or_lr_schedule=(config or self.config).lr)
