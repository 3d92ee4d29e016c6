"""IAF-VAE (Kingma et al. 2016): a VAE whose posterior is a diagonal Gaussian followed by inverse autoregressive
flow steps; config (hyperparameters), objective (the paper's math), nets (MADE, IAF, the three VAEs), algorithm."""
