"""Improved-GAN (Salimans et al. 2016): semi-supervised K+1-class GAN with feature matching."""
