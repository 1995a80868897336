"""The shared kernel: contracts every machine reads the same way (laptop, login node, GPU node).

Typed config models and their loading, the one state vocabulary, the sweep folder's layout, the MLflow
run layout, the error tree, atomic writes. It imports nothing of ours but `trainables` (the trainable
registry, to validate hyperparameters), and no backend: no ssh, SLURM, MLflow, S3 or database.
"""
