"""AVAE: affine (rotation) variational autoencoder on scikit-learn digits (EXPERIMENTS.md 2.6).

Nothing is imported here so that ``trainables.avae.config`` stays torch-free.
"""
