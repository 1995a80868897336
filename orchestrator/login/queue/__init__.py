"""The durable queue of sweeps (store, states) and the agent that reconciles it with SLURM."""
