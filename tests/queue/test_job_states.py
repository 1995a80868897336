"""SLURM's job states, from the text squeue and sacct print to what the agent does with a sweep.

The regression this guards against: on clusters whose nodes power up on demand a job is CONFIGURING
while they boot; a parser that folded it into UNKNOWN made the agent mark the sweep FAILED (final) and
close its MLflow runs as KILLED while the job was about to train. Here the agent runs against stand-in
`squeue`/`sacct` programs that print lines in the exact shape the real test cluster printed for the
agent's own output formats (tests/queue/recorded/, SLURM 22.05; the CONFIGURING and the unknown state
are written into such lines: this cluster's nodes never boot), through the real SLURM adaptor, a real
queue store and a real MLflow store: no state is handed to the agent as a Python value.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cluster.adaptors.slurm import SlurmClient
from orchestrator.kernel.config.models import QueueSettings
from orchestrator.kernel.states import JobState, RunStatus, SweepState
from orchestrator.kernel.sweep_folder import Bundle, BundleManifest
from orchestrator.login.queue.agent import Agent
from orchestrator.login.queue.rows import NewSweep
from orchestrator.login.queue.slurm_port import SlurmPort
from orchestrator.login.queue.store import QueueStore

RECORDED = Path(__file__).parent / "recorded"

# Every state squeue's and sacct's man pages list (long names and squeue's compact codes).
DOCUMENTED = {
    "BOOT_FAIL": "BF",
    "CANCELLED": "CA",
    "COMPLETED": "CD",
    "CONFIGURING": "CF",
    "COMPLETING": "CG",
    "DEADLINE": "DL",
    "FAILED": "F",
    "NODE_FAIL": "NF",
    "OUT_OF_MEMORY": "OOM",
    "PENDING": "PD",
    "PREEMPTED": "PR",
    "RUNNING": "R",
    "RESV_DEL_HOLD": "RD",
    "REQUEUE_FED": "RF",
    "REQUEUE_HOLD": "RH",
    "REQUEUED": "RQ",
    "RESIZING": "RS",
    "REVOKED": "RV",
    "SIGNALING": "SI",
    "SPECIAL_EXIT": "SE",
    "STAGE_OUT": "SO",
    "STOPPED": "ST",
    "SUSPENDED": "S",
    "TIMEOUT": "TO",
}


@pytest.mark.parametrize(("name", "code"), sorted(DOCUMENTED.items()))
def test_every_documented_state_is_known_and_classified(name: str, code: str) -> None:
    state = JobState.parse(name)
    assert state.value == name and JobState.parse(code) == state
    assert [state.is_ended, state.holds_allocation, state.is_waiting].count(True) == 1, state


def test_sacct_and_squeue_spellings() -> None:
    assert JobState.parse("CANCELLED by 0") == JobState.CANCELLED  # sacct names who cancelled
    assert JobState.parse("RUNNING+") == JobState.RUNNING  # a truncated sacct column
    assert JobState.parse("  configuring ") == JobState.CONFIGURING
    assert JobState.parse("") == JobState.UNKNOWN and JobState.parse("WARMING_UP") == JobState.UNKNOWN
    assert not JobState.UNKNOWN.is_ended  # an unknown state never ends anything
    assert JobState("WARMING_UP") == JobState.UNKNOWN  # a newer login node's answer still reads


def test_the_adaptor_parses_recorded_squeue_and_sacct_output(tmp_path: Path) -> None:
    slurm = FakeSlurm(tmp_path)
    slurm.squeue("squeue-configuring.txt")
    slurm.sacct("sacct-completed.txt")
    client = SlurmClient(env=slurm.env)
    jobs = client.queue_snapshot("orch.")  # the agent's job (orch-agent.c) and other users' jobs are not ours
    assert [(j.job_id, j.name, j.state) for j in jobs] == [
        ("4242", "orch.s-1", JobState.CONFIGURING),
        ("4250_1", "orch.s-9", JobState.PENDING),
        ("4250_0", "orch.s-9", JobState.RUNNING),
    ]
    assert jobs[2].elapsed_s == 31.0 and jobs[1].reason == "Priority"
    records = client.jobs_named(["orch.s-1"])
    assert [(r.job_id, r.state) for r in records] == [("4242", JobState.COMPLETED)]


@dataclass
class FakeSlurm:
    """`squeue` and `sacct` stand-ins on PATH that print a recorded file (the one named last)."""

    root: Path

    def __post_init__(self) -> None:
        self.bin = self.root / "bin"
        self.bin.mkdir(parents=True)
        for program in ("squeue", "sacct"):
            script = self.bin / program
            script.write_text(f'#!/bin/sh\ncat "$(cat {self.root}/{program}.which)"\n')
            script.chmod(script.stat().st_mode | stat.S_IEXEC)
        self.squeue("empty.txt")
        self.sacct("empty.txt")

    @property
    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.bin}:{os.environ['PATH']}"}

    def squeue(self, recorded: str) -> None:
        (self.root / "squeue.which").write_text(str(RECORDED / recorded))

    def sacct(self, recorded: str) -> None:
        (self.root / "sacct.which").write_text(str(RECORDED / recorded))


@pytest.fixture
def sweep(tmp_path: Path) -> Iterator[dict[str, object]]:
    """A sweep submitted as job 4242: its folder (manifest, run ledger), a queue row, and its MLflow runs, RUNNING."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow = MlflowClient(uri)
    experiment = mlflow.create_experiment("p", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = mlflow.create_run(experiment, run_name="s-1").info.run_id
    trial = mlflow.create_run(experiment, run_name="s-1/t0", tags={"mlflow.parentRunId": parent}).info.run_id
    folder = Bundle(tmp_path / "sweeps" / "s-1")
    folder.root.mkdir(parents=True)
    profile = {"name": "c", "backend": "slurm", "remote": {"workdir": str(tmp_path)}, "slurm": {"partition": "low"}}
    folder.write_manifest(
        BundleManifest(
            "s-1", "s", "p", "conf/sweeps/s.yaml", profile, uri, {"commit": "abc"}, time.time(), "laptop", parent, experiment
        )
    )
    folder.runs_file.write_text(json.dumps({"t0": trial}))
    folder.trials_file.write_text(
        json.dumps({"trials": {"t0": {"trial_id": "t0", "state": "RUNNING", "epoch": 0, "metric": None}}})
    )
    store = QueueStore(f"sqlite:///{tmp_path}/queue.db")
    store.add(
        NewSweep(
            sweep_id="s-1",
            project="p",
            name="s",
            cluster="c",
            bundle=str(folder.root),
            priority=0,
            gpus=1,
            config_hash="h",
            metric="m",
            mode="min",
            after=(),
        )
    )
    assert store.claim_for_submit("s-1")
    store.record_submitted("s-1", ["4242"])
    yield {"store": store, "mlflow": mlflow, "runs": (parent, trial), "tmp": tmp_path}
    store.close()


def _statuses(sweep: dict[str, object]) -> list[str]:
    mlflow, runs = sweep["mlflow"], sweep["runs"]
    return [mlflow.get_run(run_id).info.status for run_id in runs]  # type: ignore[attr-defined, union-attr]


def test_a_configuring_job_keeps_its_sweep_running_and_its_runs_open(sweep: dict[str, object]) -> None:
    store: QueueStore = sweep["store"]  # type: ignore[assignment]
    slurm = FakeSlurm(sweep["tmp"] / "slurm")  # type: ignore[operator]
    agent = Agent(store, SlurmPort(slurm.env), QueueSettings(), "c", "agent-test")

    slurm.squeue("squeue-configuring.txt")  # the job got a node that is booting
    agent.tick()
    assert store.get("s-1").state == SweepState.RUNNING
    assert _statuses(sweep) == [RunStatus.RUNNING, RunStatus.RUNNING]

    slurm.squeue("squeue-unknown-state.txt")  # a state this version of orch does not know
    agent.tick()
    assert store.get("s-1").state == SweepState.RUNNING, "a state we cannot classify must not end the sweep"
    assert _statuses(sweep) == [RunStatus.RUNNING, RunStatus.RUNNING]

    slurm.squeue("empty.txt")  # the job left squeue; accounting says how it ended
    slurm.sacct("sacct-completed.txt")
    agent.tick()
    assert store.get("s-1").state == SweepState.SUCCEEDED
    # The path the bug took, now only once the sweep has really ended: runs left RUNNING are closed.
    assert _statuses(sweep) == [RunStatus.KILLED, RunStatus.KILLED]
