"""How a sweep becomes work on machines.

    adaptors/     the one module per external system: SLURM's commands, slurmrestd, ssh, git
    slurm/        on the login node: the profile-to-sbatch mapping (job_spec.py), submitit, time limits
    node/         on the GPU node (or this machine for `orch run`): the job entry, Ray across the
                  allocation, the Tune experiment, checkpoint-on-signal, trial status, the drill's canary
    testcluster/  a real SLURM cluster on this machine, for tests

It never imports the queue, the scheduling policy or the laptop's command line.
"""
