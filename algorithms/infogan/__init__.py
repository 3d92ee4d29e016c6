"""InfoGAN (Chen et al. 2016): a GAN whose latent codes keep their mutual information with the images."""
