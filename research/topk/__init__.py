"""Sparse top-k spatial activations under adversarial attack (EXPERIMENTS.md section 5): the SpatialTopK
layer (per-location and global, optional Numenta boosting), the networks that place it, in-house FGSM /
PGD / BPDA / transfer / Gaussian-noise evaluation, and a Ray Tune trainable reporting each as a metric.

A lab's own project: it imports torch, numpy, scikit-learn, pydantic and Ray, and from orch only the
shared CIFAR reader (trainables.data.cifar, lazily, for CIFAR-10)."""
