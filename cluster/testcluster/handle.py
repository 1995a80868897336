"""A typed handle on a running test cluster (read from cluster.json), for tests and scripts."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .cluster import load_state
from .procs import ClusterError, is_alive


@dataclass(frozen=True)
class SlurmCluster:
    dir: Path
    cluster_name: str
    slurm_conf: Path
    env_file: Path
    controller: dict
    ports: dict
    nodes: list[dict]
    partitions: list[dict]
    gpus_per_node: int
    account: str
    user: str
    ssh: dict
    munge_socket: str
    mysql_socket: str
    netns: list[str]
    daemons: dict
    ready: bool
    up_seconds: float | None
    extra: dict = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> SlurmCluster:
        state = load_state(Path(root))
        if state is None:
            raise ClusterError(f"no cluster.json in {root}")
        known = set(cls.__dataclass_fields__) - {"extra", "dir", "slurm_conf", "env_file"}
        return cls(
            dir=Path(state["dir"]),
            slurm_conf=Path(state["slurm_conf"]),
            env_file=Path(state["env_file"]),
            **{k: v for k, v in state.items() if k in known},
            extra={k: v for k, v in state.items() if k not in known | {"dir", "slurm_conf", "env_file"}},
        )

    @property
    def node_names(self) -> list[str]:
        return [n["name"] for n in self.nodes]

    @property
    def ssh_config(self) -> Path:
        return Path(self.ssh["config"])

    def is_up(self) -> bool:
        return self.ready and all(is_alive(d["pid"], d["start_ticks"]) for d in self.daemons.values())

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's environment) without SLURM_* job variables, plus SLURM_CONF."""
        src = os.environ if base is None else base
        env = {k: v for k, v in src.items() if not k.startswith("SLURM_")}
        env["SLURM_CONF"] = str(self.slurm_conf)
        return env

    def run(
        self, argv: Sequence[str], timeout_s: float = 30.0, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        """Run a SLURM command (argument list) against this cluster, bounded by `timeout_s`."""
        done = subprocess.run(
            list(argv), env=self.env(), capture_output=True, text=True, timeout=timeout_s, cwd=cwd, stdin=subprocess.DEVNULL
        )
        if check and done.returncode != 0:
            raise ClusterError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
        return done

    def fill_node_with_high_job(self, node: str, seconds: int) -> str:
        """A job in the high partition asking for every GPU of `node`, sleeping `seconds`: SLURM preempts (requeues)
        the low-partition jobs there. Its job id."""
        argv = ["sbatch", "--parsable", "-p", "high", "-w", node, f"--gres=gpu:{self.gpus_per_node}"]
        return self.run([*argv, "--output=/dev/null", "--wrap", f"sleep {seconds}"]).stdout.strip()

    def ssh_argv(self, *remote: str) -> list[str]:
        """ssh to the login node; `remote` words are joined by the remote shell, so quote them."""
        return ["ssh", "-F", str(self.ssh_config), self.ssh["host"], *remote]
