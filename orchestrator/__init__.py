"""Open Research Orchestrator: sweeps of research trainables, locally or on SLURM, tracked in MLflow.

Importing this package is cheap: ray, torch and mlflow are imported only by the
modules that run or track experiments.
"""

__version__ = "0.1.0"
