"""HVAE: a tile VAE applied convolutionally plus a global VAE over its latent grid (EXPERIMENTS.md 7).

Nothing is imported here so that ``trainables.hvae.config`` stays torch-free.
"""
