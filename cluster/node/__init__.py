"""The GPU node: what runs inside a SLURM allocation (job_entry.py, ray_allocation.py, preemption.py,
trial_status.py, the drill's canary) and the Tune experiment both a job and `orch run` build
(experiment.py, shards.py; local.py is this machine acting as its own node). Imports tracking, the
adaptors, the kernel and trainables; never the login node or the laptop."""
