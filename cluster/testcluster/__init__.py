"""A real SLURM cluster on this machine, for tests: `python -m cluster.testcluster up|down|status`.

munged, a private MariaDB, slurmdbd, slurmctld, one slurmd per node (each in its own network
namespace with its own address, fake GPUs through GRES) and an sshd "login node" on 127.0.0.1,
all with state under one directory and stopped by PID. See README.md next to this file.
"""

from .cluster import down, load_state, status, up
from .handle import SlurmCluster
from .layout import Layout, Ports
from .procs import ClusterError

__all__ = ["ClusterError", "Layout", "Ports", "SlurmCluster", "down", "load_state", "status", "up"]
