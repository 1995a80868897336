"""The `slurm_cluster` fixture: a real local SLURM cluster (cluster/testcluster) for the session.

Registered once, in tests/conftest.py, so every test folder shares the one cluster (only one
test cluster can run per machine: fixed ports and network namespaces)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.testcluster import ClusterError, SlurmCluster
from cluster.testcluster.install import missing_programs
from cluster.testcluster.network import NETNS_DIR
from cluster.testcluster.procs import is_alive

REPO = Path(__file__).resolve().parents[2]
UP_TIMEOUT_S = 120
DOWN_TIMEOUT_S = 120


def _cli(command: str, root: Path, timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cluster.testcluster", command, "--dir", str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


def _reusable(root: Path) -> SlurmCluster | None:
    try:
        cluster = SlurmCluster.load(root)
    except ClusterError:
        return None
    return cluster if cluster.is_up() else None


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """Brings the cluster up (or reuses the one up in $ORCH_SLURM_DIR) and stops what it started."""
    missing = missing_programs()
    if missing:
        pytest.fail(f"the SLURM test cluster needs {', '.join(missing)}: run `make slurm-deps`", pytrace=False)
    given = os.environ.get("ORCH_SLURM_DIR")
    cluster = _reusable(Path(given)) if given else None
    started = cluster is None
    if started:
        root = Path(given) if given else tmp_path_factory.mktemp("slurm")
        done = _cli("up", root, UP_TIMEOUT_S)
        if done.returncode != 0:
            pytest.fail(f"test cluster did not come up in {root}:\n{done.stdout}\n{done.stderr}", pytrace=False)
        cluster = SlurmCluster.load(root)
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.slurm_conf)  # submitit and any bare sbatch/sacct in tests
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        if started:
            _stop_and_check(cluster)


def _stop_and_check(cluster: SlurmCluster) -> None:
    done = _cli("down", cluster.dir, DOWN_TIMEOUT_S)
    alive = [f"{name} (pid {d['pid']})" for name, d in cluster.daemons.items() if is_alive(d["pid"], d["start_ticks"])]
    left = [ns for ns in cluster.netns if (NETNS_DIR / ns).exists()]
    if done.returncode != 0 or alive or left:
        pytest.fail(f"`down` left daemons {alive} and namespaces {left}:\n{done.stdout}\n{done.stderr}", pytrace=False)
