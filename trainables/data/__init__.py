"""Datasets shared by the trainables."""
