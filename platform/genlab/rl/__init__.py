"""The RL library that RL methods (GAIL, VIME, BC) import; the RL runner (``genlab.runners.rl``) uses it too.

- ``hparams``: the typed PPO hyperparameters (pydantic only) shared by every method built on PPO and by experts;
- ``ppo``: ``make_ppo_config`` (a ``PPOConfig`` or a subclass, 2-CPU-friendly sampling);
- ``evaluation``: rollouts of true environment returns, random and normalized scores;
- ``demos``: expert demonstrations on disk (record, check, load);
- ``connectors``: the learner-connector piece that replaces or adds to the rewards from a learner-only module;
- ``auxiliary``: a Learner mixin for learner-only auxiliary modules (own optimizer, per-iteration step budget) and
  what such modules share (the action bounds they clip to, the std rule of their input standardization);
- ``aux_ppo``: ``AuxPPOConfig``, PPO with one learner-only auxiliary module (GAIL's and VIME's configs are built on it);
- ``metrics``: RLlib's nested results as genlab's namespaced metrics.

Nothing here imports a runner, tracking or an algorithm. This package's ``__init__`` imports nothing, so that
``genlab.rl.hparams`` stays light (spec validation needs no Ray).
"""
