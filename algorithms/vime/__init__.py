"""VIME (Houthooft et al. 2016): a Bayesian dynamics model's information gain as an exploration bonus, on PPO."""
