"""Weight sharing inside convolutions (EXPERIMENTS.md section 4): shared layers, the networks built from
them, and a Ray Tune trainable that reports test accuracy against the count of unique parameters.

A lab's own project: it imports torch, numpy, scikit-learn, pydantic and Ray, and from orch only the
shared data readers (trainables.data.mnist, and trainables.data.cifar for CIFAR-10)."""
