"""One adaptor per external system: each is the only module that speaks to it, with typed results and
errors (SLURM's command-line tools: slurm.py; slurmrestd: slurmrest.py; ssh: ssh.py; git: git.py). They
import the kernel only. MLflow's and S3's adaptors live in orchestrator/tracking/ (client.py, s3.py),
the queue store's in orchestrator/login/queue/store.py."""
