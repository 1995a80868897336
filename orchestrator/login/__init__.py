"""The login node: the sweep service as a library (sweeps.py, drill.py), its one command-line entry
(`python -m orchestrator.login`, __main__.py), the wire protocol both ends share (wire.py), and the
durable queue with its agent (queue/). Runs on the cluster's login node (or in the REST transport's
submit job); imports the SLURM backend (cluster.slurm), the node's job entry (to hand it to submitit),
tracking and the kernel, never the laptop."""
