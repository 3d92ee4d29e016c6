"""The runners: how a validated spec is trained, side by side, each reaching methods only through the registry.

- ``generative``: Ray Train (``TorchTrainer``) drives a ``GenerativeAlgorithm`` on each worker;
- ``rl``: an RLlib algorithm built by the method's ``build_config``, iteration by iteration; PPO experts;
- ``sweep``: Ray Tune + Optuna + ASHA over either kind, one MLflow parent run.
"""
