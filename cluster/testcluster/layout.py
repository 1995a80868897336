"""Where everything of one test cluster lives: paths under its state directory, ports, names.

This module owns the on-disk layout; every other module asks it for a path.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

CLUSTER_NAME = "orchtest"
ACCOUNT = "orch"
SSH_HOST_ALIAS = "orch-login"
MARKER = ".orch-testcluster"  # only a directory holding this file (or an empty one) is ever wiped
NODE_CPUS = 4
NODE_MEMORY_MB = 8000
GPUS_PER_NODE = 4
GPU_CHAR_MAJOR = 195  # the NVIDIA major number; SLURM only wants a character device
MAX_TIME_MIN = 120
DEFAULT_TIME_MIN = 60


@dataclass(frozen=True)
class Ports:
    """TCP ports of the daemons; slurmd uses the same port inside every node namespace."""

    slurmctld: int = 6917
    slurmd: int = 6918
    slurmdbd: int = 6919
    mysql: int = 6920
    ssh: int = 2222
    slurmrestd: int = 6921

    @classmethod
    def from_base(cls, base: int, ssh: int) -> Ports:
        return cls(slurmctld=base, slurmd=base + 1, slurmdbd=base + 2, mysql=base + 3, ssh=ssh, slurmrestd=base + 4)


@dataclass(frozen=True)
class Node:
    """One compute node: a slurmd in its own network namespace, joined to the host by a veth pair."""

    name: str
    index: int  # 1-based; picks the subnet 10.77.<index>.0/24

    @property
    def netns(self) -> str:
        return f"orch-{self.name}"

    @property
    def veth_host(self) -> str:
        return f"orch-{self.name}-h"

    @property
    def veth_node(self) -> str:
        return f"orch-{self.name}-c"

    @property
    def host_address(self) -> str:
        return f"10.77.{self.index}.1"

    @property
    def address(self) -> str:
        return f"10.77.{self.index}.2"


NODES = (Node("n1", 1), Node("n2", 2))
# Power saving (SLURM's SuspendProgram/ResumeProgram): a third node, alone in its partition, asleep until a job
# needs it; "booting" it (power.py) takes RESUME_DELAY_S, during which its job is CONFIGURING.
POWER_NODE = Node("n3", 3)
ALL_NODES = (*NODES, POWER_NODE)
RESUME_DELAY_S = 8
SUSPEND_TIMEOUT_S = 10


@dataclass(frozen=True)
class Partition:
    name: str
    priority_tier: int
    preempt_mode: str
    default: bool = False
    grace_time_s: int = 0


PARTITIONS = (
    Partition("low", priority_tier=1, preempt_mode="REQUEUE", default=True, grace_time_s=30),
    Partition("high", priority_tier=10, preempt_mode="OFF"),
)
POWER_PARTITION = Partition("power", priority_tier=1, preempt_mode="OFF")  # POWER_NODE only


@dataclass(frozen=True)
class Layout:
    """Every path of a cluster whose state lives under `root`."""

    root: Path
    ports: Ports = field(default_factory=Ports)

    @property
    def controller_hostname(self) -> str:
        # slurmctld only runs where the short hostname matches SlurmctldHost.
        return socket.gethostname().split(".")[0]

    @property
    def controller_address(self) -> str:
        return NODES[0].host_address

    # -- top level -------------------------------------------------------------
    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def cluster_json(self) -> Path:
        return self.root / "cluster.json"

    @property
    def env_sh(self) -> Path:
        return self.root / "env.sh"

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def slurm_conf(self) -> Path:
        return self.etc / "slurm.conf"

    @property
    def gres_conf(self) -> Path:
        return self.etc / "gres.conf"  # SLURM looks for it next to slurm.conf

    @property
    def slurmdbd_conf(self) -> Path:
        return self.etc / "slurmdbd.conf"  # likewise

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def daemon_log(self, name: str) -> Path:
        """stdout/stderr of a daemon process (its own log file may be elsewhere)."""
        return self.log / f"{name}.out"

    # -- munge -----------------------------------------------------------------
    @property
    def munge_dir(self) -> Path:
        return self.root / "munge"

    @property
    def munge_key(self) -> Path:
        return self.munge_dir / "munge.key"

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "munge.socket.2"

    # -- mariadb ---------------------------------------------------------------
    @property
    def mysql_dir(self) -> Path:
        return self.root / "mysql"

    @property
    def mysql_data(self) -> Path:
        return self.mysql_dir / "data"

    @property
    def mysql_socket(self) -> Path:
        return self.mysql_dir / "mysqld.sock"

    # -- slurm -----------------------------------------------------------------
    @property
    def slurmctld_log(self) -> Path:
        return self.log / "slurmctld.log"

    def slurmd_log(self, node: str) -> Path:
        return self.log / f"slurmd-{node}.log"

    @property
    def slurmdbd_log(self) -> Path:
        return self.log / "slurmdbd.log"

    @property
    def jobcomp(self) -> Path:
        return self.log / "jobcomp.txt"

    def gpu_dir(self, node: str) -> Path:
        return self.root / "gpus" / node

    # -- ssh login node --------------------------------------------------------
    @property
    def ssh_dir(self) -> Path:
        return self.root / "ssh"

    @property
    def sshd_config(self) -> Path:
        return self.ssh_dir / "sshd_config"

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def ssh_key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def ssh_host_key(self) -> Path:
        return self.ssh_dir / "ssh_host_ed25519_key"

    @property
    def authorized_keys(self) -> Path:
        return self.ssh_dir / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def sshd_log(self) -> Path:
        return self.log / "sshd.log"

    @property
    def jwt_key(self) -> Path:
        """The HS256 key slurmctld and slurmdbd check REST tokens with (auth/jwt)."""
        return self.state / "jwt_hs256.key"

    @property
    def jwt_token(self) -> Path:
        """A token for the cluster user, made by `scontrol token` once slurmctld is up."""
        return self.root / "jwt.token"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.slurmrestd}"

    # -- power saving --------------------------------------------------------------
    @property
    def prolog(self) -> Path:
        """The Prolog slurmd runs before each job: it fails once per `fail_next_launch` marker."""
        return self.etc / "prolog.sh"

    def fail_next_launch(self, n: int) -> Path:
        """One marker per launch to fail (the Prolog removes one, atomically, and fails)."""
        return self.run / f"fail-next-launch.{n}"

    def power_program(self, action: str) -> Path:
        """The SuspendProgram ("suspend") or ResumeProgram ("resume") slurmctld runs with a hostlist."""
        return self.etc / f"power-{action}.sh"

    @property
    def power_log(self) -> Path:
        return self.log / "power.log"

    def all_dirs(self) -> list[Path]:
        dirs = [self.etc, self.log, self.run, self.state / "ctld", self.munge_dir, self.mysql_dir, self.ssh_dir]
        for node in ALL_NODES:
            dirs += [self.state / "slurmd" / node.name, self.gpu_dir(node.name)]
        return dirs
