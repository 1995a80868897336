"""The durable queue of sweeps across projects, on the login node: the store (the one adaptor of the
queue database), the scheduling policy, and the agent that reconciles the queue with SLURM."""
