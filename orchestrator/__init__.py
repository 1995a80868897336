"""Open Research Orchestrator: sweeps of research trainables, locally or on SLURM, tracked in MLflow.

    kernel/    shared by every machine: config models, states, sweep folder layout, tracking layout, errors
    laptop/    the `orch` command and the places it sends a sweep to (this machine, ssh, slurmrestd, a queue)
    login/     the login node: the sweep service, its command-line entry and wire, the queue and its agent
    tracking/  MLflow (the one adaptor) and S3: runs, metrics, artifacts, the spool; used on every machine

Importing this package is cheap: ray, torch and mlflow are imported only by the modules that run or
track experiments. ARCHITECTURE.md draws the machines and lists who owns which contract.
"""

__version__ = "0.1.0"
