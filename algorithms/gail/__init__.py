"""GAIL (Ho & Ermon 2016): imitation by a discriminator-given reward, on RLlib's PPO."""
