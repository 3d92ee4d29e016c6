"""Generative algorithms, one package each (see genlab.registry)."""
