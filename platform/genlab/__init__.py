"""genlab: reproduce and sweep the 2016 generative models on Ray (Train, Tune, RLlib) with MLflow."""

__version__ = "0.1.0"
