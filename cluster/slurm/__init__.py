"""The SLURM backend, on the login node: what a job asks SLURM for (job_spec.py, the one mapping from a
profile to sbatch options and job names), the submitit submission of a sweep's job(s), and time limits
fitted to start early. Imports the node's job entry (submitit pickles it), the adaptors and the kernel."""
