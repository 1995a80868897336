"""Research trainables: one Ray Tune ``Trainable`` per experiment, on a shared base.

Importing this package (or :mod:`trainables.registry`) must stay instant: no torch,
no ray. The heavy modules are imported lazily through the registry.
"""

from trainables.registry import (
    TrainableSpec,
    UnknownTrainableError,
    available_trainables,
    get_trainable_spec,
)

__all__ = [
    "TrainableSpec",
    "UnknownTrainableError",
    "available_trainables",
    "get_trainable_spec",
]
