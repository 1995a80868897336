"""Research trainables: one Ray Tune trainable per experiment, and the public side of the trainable
interface any lab's project uses (registry.py: how a project names its trainable; command.py: the
command form; runtime.py: what a job tells a running trainable).

Importing this package (or :mod:`trainables.registry`) must stay instant: no torch, no ray. The heavy
modules are imported lazily through the registry.
"""
