"""How a sweep becomes work on machines: the local backend, the Tune experiment, (later) SLURM."""
