"""The queue and its agent against the real local SLURM cluster, through the ssh login node:
three projects with different priorities and budgets fill the cluster in the policy's order
while the agent is SIGKILLed at random moments (and at the three crash windows of a submit);
every sweep ends exactly once, SLURM's records show no duplicate submission. Bad input is
one line and changes nothing."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.kernel.states import TERMINAL, SweepState
from orchestrator.login.queue.store import QueueStore
from tests.conftest import REPO, assert_one_error_line, run_orch

pytestmark = pytest.mark.integration

PROFILE = REPO / "conf" / "clusters" / "slurm-queue-local.yaml"
SWEEPS = {name: REPO / "conf" / "sweeps" / f"queue-{name}.yaml" for name in ("avae", "hvae", "avae3d")}
RUN_TIMEOUT_S = 600


def make_profile(tmp: Path, name: str, **queue: Any) -> Path:
    data = yaml.safe_load(PROFILE.read_text())
    data["name"] = name
    data["queue"] = {**data["queue"], "store": f"sqlite:///{tmp}/queue.db", "agent_dir": str(tmp / "agent"), "tick_s": 1, **queue}
    folder = tmp / "clusters"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def env_for(cluster: Any) -> dict[str, str]:
    return {"ORCH_SLURM_DIR": str(cluster.dir), "ORCH_PYTHON": sys.executable}


def orch(cluster: Any, *args: str, timeout: float = 180) -> Any:
    return run_orch(list(args), cwd=REPO, env=env_for(cluster), timeout=timeout)


def queue_json(cluster: Any, profile: Path) -> dict[str, Any]:
    result = orch(cluster, "queue", "--cluster", str(profile), "--json", "--all")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def resolved_profile_json(cluster: Any, profile: Path) -> str:
    from orchestrator.kernel.config.loading import load_cluster

    old = {k: os.environ.get(k) for k in env_for(cluster)}
    os.environ.update(env_for(cluster))
    try:
        return load_cluster(str(profile), REPO / "conf").model_dump_json()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class AgentProcess:
    """`python -m orchestrator.login agent run`, started and SIGKILLed by this test, by PID."""

    def __init__(self, cluster: Any, profile_json: str, log: Path) -> None:
        self.cluster, self.profile_json, self.log = cluster, profile_json, log
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, crash_at: str | None = None) -> None:
        env = {**self.cluster.env(), "PYTHONPATH": str(REPO), **({"ORCH_AGENT_CRASH_AT": crash_at} if crash_at else {})}
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.login", "agent", "run", "--profile-json", self.profile_json],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def sacct_jobs(cluster: Any, names: list[str]) -> dict[str, list[dict[str, str]]]:
    out = cluster.run(
        [
            "sacct",
            "--parsable2",
            "--noheader",
            "--allocations",
            "--starttime=now-1days",
            "--format=JobID,JobName,State,Start,End",
            f"--name={','.join(names)}",
        ]
    ).stdout
    jobs: dict[str, list[dict[str, str]]] = {}
    for line in out.splitlines():
        job_id, name, state, start, end = line.split("|")
        jobs.setdefault(name, []).append({"job_id": job_id, "state": state, "start": start, "end": end})
    return jobs


def test_three_projects_by_policy_while_the_agent_is_killed(slurm_cluster: Any, tmp_path: Path) -> None:
    profile = make_profile(tmp_path, "queue-chaos", global_max_gpus=2, aging_per_hour=0.0)
    order = [("avae", 0), ("hvae", 10), ("avae3d", 5), ("avae", 0), ("hvae", 10), ("avae3d", 5)]
    sweeps: dict[str, str] = {}  # sweep id -> project
    for project, priority in order:
        result = orch(
            slurm_cluster, "submit", str(SWEEPS[project]), "--cluster", str(profile), "--priority", str(priority), "--yes"
        )
        assert result.returncode == 0, result.stdout + result.stderr
        sweeps[result.stdout.split("queued sweep ", 1)[1].split()[0]] = project
    assert {s["state"] for s in queue_json(slurm_cluster, profile)["sweeps"]} == {"queued"}

    agent = AgentProcess(slurm_cluster, resolved_profile_json(slurm_cluster, profile), tmp_path / "agent.log")
    rng = random.Random(20261123)
    # The three crash windows of a submit first (the agent SIGKILLs itself there: claimed, sbatch answered but
    # submitit's bookkeeping not written, submitted), then random kills.
    for crash_at in ("claimed", "sbatch", "submitted"):
        agent.start(crash_at)
        assert agent.process is not None
        agent.process.wait(timeout=120)
        assert agent.process.returncode == -signal.SIGKILL, (tmp_path / "agent.log").read_text()[-3000:]
    store = QueueStore(f"sqlite:///{tmp_path}/queue.db")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    kills = 0
    try:
        while True:
            if not agent.alive():
                agent.start()
            time.sleep(rng.uniform(0.5, 4.0))  # how long this agent lives: chaos pacing and poll interval
            states = store.states_of(sweeps)
            if all(state in TERMINAL for state in states.values()):
                break
            assert time.monotonic() < deadline, (
                f"sweeps not done after {RUN_TIMEOUT_S} s: {states}\n" + (tmp_path / "agent.log").read_text()[-4000:]
            )
            # Killed only while a sweep is still open, the first time for sure: the next pass starts an agent again
            # before it can see every sweep ended, so a kill and a restart under open sweeps happen however fast
            # or slow the sweeps run (no count of passes made before they ended).
            if rng.random() < 0.5 or kills == 0:
                agent.kill()
                kills += 1
        rows = {sid: store.get(sid) for sid in sweeps}
        events = store.events(kinds=["submitting", "submitted"])
    finally:
        agent.kill()
        store.close()
    assert kills >= 1 and agent.starts >= 5
    # The job the agent killed at "sbatch" left held (never started without its log folder and pickle): the next
    # agent moved its pickle into place and released it.
    finished = [e["detail"] for e in events if e["kind"] == "submitted" and "submit finished, released" in (e["detail"] or "")]
    assert len(finished) == 1 and ".pkl -> " in finished[0], [e["detail"] for e in events if e["kind"] == "submitted"]
    assert {sid: row.state for sid, row in rows.items()} == dict.fromkeys(sweeps, SweepState.SUCCEEDED), {
        sid: (row.state, row.reason) for sid, row in rows.items()
    }

    # SLURM's own records: exactly one job per sweep, none submitted twice.
    accounting = sacct_jobs(slurm_cluster, [f"orch.{sid}" for sid in sweeps])
    assert {name: len(jobs) for name, jobs in accounting.items()} == {f"orch.{sid}": 1 for sid in sweeps}
    assert all(jobs[0]["state"] == "COMPLETED" for jobs in accounting.values())
    assert all(rows[sid].job_ids == (accounting[f"orch.{sid}"][0]["job_id"],) for sid in sweeps)

    # The policy's order: hvae (10) before avae3d (5) before avae (0), within each project's budget.
    first_claims = []
    for event in events:
        if event["kind"] == "submitting" and event["sweep_id"] not in first_claims:
            first_claims.append(event["sweep_id"])
    projects = [sweeps[sid] for sid in first_claims]
    assert projects[:2] == ["hvae", "avae3d"], projects  # hvae's cap is 1 GPU: its second sweep waits
    assert projects[-2:] == ["avae", "avae"], projects
    # Never more than the account's 2 GPUs, nor more than 1 for hvae or avae3d, at any moment.
    spans = [(jobs[0]["start"], jobs[0]["end"], sweeps[name.removeprefix("orch.")]) for name, jobs in accounting.items()]
    for start, _, _ in spans:
        running = [p for s, e, p in spans if s <= start < e]
        assert len(running) <= 2, spans
        assert running.count("hvae") <= 1 and running.count("avae3d") <= 1, spans
    # And one MLflow parent run per sweep, even where a submit was repeated after a kill.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{slurm_cluster.dir}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    for sid in sweeps:
        parents = client.search_runs(experiments, f"tags.`orch.sweep_id` = '{sid}' and tags.`orch.kind` = 'sweep'")
        assert len(parents) == 1, sid


def test_bad_queue_input_is_one_line_and_changes_nothing(slurm_cluster: Any, tmp_path: Path) -> None:
    profile = make_profile(tmp_path, "queue-bad")
    first = orch(slurm_cluster, "submit", str(SWEEPS["avae"]), "--cluster", str(profile), "--hold")
    assert first.returncode == 0, first.stderr
    a = first.stdout.split("queued sweep ", 1)[1].split()[0]
    second = orch(slurm_cluster, "submit", str(SWEEPS["hvae"]), "--cluster", str(profile), "--after", a, "--priority", "3")
    assert second.returncode == 0, second.stderr
    b = second.stdout.split("queued sweep ", 1)[1].split()[0]
    before = queue_json(slurm_cluster, profile)

    assert_one_error_line(
        orch(slurm_cluster, "priority", "no-such-sweep", "4", "--cluster", str(profile)), "no sweep 'no-such-sweep'"
    )
    assert_one_error_line(
        orch(slurm_cluster, "priority", b, "high", "--cluster", str(profile)), "priority 'high' is not a number"
    )
    assert_one_error_line(orch(slurm_cluster, "hold", "no-such-sweep", "--cluster", str(profile)), "no sweep")
    assert_one_error_line(orch(slurm_cluster, "release", b, "--cluster", str(profile)), "is queued, not held")
    assert_one_error_line(orch(slurm_cluster, "cancel", "no-such-sweep", "--cluster", str(profile)), "no sweep")
    assert_one_error_line(orch(slurm_cluster, "after", a, b, "--cluster", str(profile)), "cycle", f"{a} -> {b} -> {a}")
    assert_one_error_line(
        orch(slurm_cluster, "submit", str(SWEEPS["avae"]), "--cluster", str(profile), "--priority", "x1"), "not a number"
    )
    assert_one_error_line(
        orch(slurm_cluster, "submit", str(SWEEPS["avae3d"]), "--cluster", str(profile), "--after", "nope"), "no sweep 'nope'"
    )
    # The same sweep file, code and cluster again, off a terminal: refused unless --yes.
    assert_one_error_line(orch(slurm_cluster, "submit", str(SWEEPS["avae"]), "--cluster", str(profile)), "queued before", "--yes")
    negative = make_profile(tmp_path, "queue-negative", projects={"avae": {"gpu_hours_per_week": -1}})
    assert_one_error_line(
        orch(slurm_cluster, "submit", str(SWEEPS["avae"]), "--cluster", str(negative)), "queue.projects.avae.gpu_hours_per_week"
    )
    assert_one_error_line(orch(slurm_cluster, "queue", "--cluster", str(negative)), "greater than or equal to 0")

    after = queue_json(slurm_cluster, profile)
    strip = lambda answer: [{k: v for k, v in s.items() if k != "updated_at"} for s in answer["sweeps"]]  # noqa: E731
    assert strip(after) == strip(before) and after["counts"] == before["counts"]
    sweeps_dir = Path(slurm_cluster.dir) / "remote" / "sweeps"
    assert sorted(p.name for p in sweeps_dir.iterdir() if p.name in (a, b)) == sorted([a, b])

    # What a researcher then does: release, reprioritise, cancel: each one line, exit 0.
    assert orch(slurm_cluster, "priority", b, "9", "--cluster", str(profile)).returncode == 0
    assert orch(slurm_cluster, "release", a, "--cluster", str(profile)).returncode == 0
    cancelled = orch(slurm_cluster, "cancel", b, "--cluster", str(profile))
    assert cancelled.returncode == 0 and "was queued" in cancelled.stdout, cancelled.stdout + cancelled.stderr
    final = {s["sweep_id"]: s for s in queue_json(slurm_cluster, profile)["sweeps"]}
    assert final[a]["state"] == "queued" and final[b]["state"] == "cancelled" and final[b]["priority"] == 9


def test_agent_start_is_idempotent_through_the_login_node(slurm_cluster: Any, tmp_path: Path) -> None:
    profile = make_profile(tmp_path, "queue-agent")
    started = orch(slurm_cluster, "agent", "start", "--cluster", str(profile))
    assert started.returncode == 0 and "agent started" in started.stdout, started.stdout + started.stderr
    pid = int(started.stdout.split("(pid ", 1)[1].split(")")[0])
    try:
        again = orch(slurm_cluster, "agent", "start", "--cluster", str(profile))
        assert again.returncode == 0 and f"already running on the login node (pid {pid})" in again.stdout, again.stdout
        deadline = time.monotonic() + 30
        while f":{pid}:" not in (status := orch(slurm_cluster, "agent", "status", "--cluster", str(profile))).stdout:
            assert time.monotonic() < deadline, status.stdout + status.stderr  # the lease names host:pid
            time.sleep(1)
        assert f"running, pid {pid}" in status.stdout
    finally:
        stopped = orch(slurm_cluster, "agent", "stop", "--cluster", str(profile))
    assert stopped.returncode == 0 and f"agent pid {pid} stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    assert not Path(f"/proc/{pid}").exists()


def test_a_submit_while_the_tracking_server_is_down_waits_for_it(slurm_cluster: Any, tmp_path: Path) -> None:
    """The agent claims a sweep while the team's tracking server restarts: the sweep goes back to the queue
    with the reason (not FAILED, as it did in a CI soak), and is submitted once the server answers again."""
    from tests.harness.s3 import free_port

    host = slurm_cluster.nodes[0]["host_address"]  # the compute nodes reach it through their default route
    port = free_port(host)
    uri, state = f"http://{host}:{port}", tmp_path / "tracking"
    server = ["tracking", "up", "--host", host, "--port", str(port), "--state-dir", str(state)]
    profile = make_profile(tmp_path, "queue-tracking-down")
    data = yaml.safe_load(profile.read_text())
    profile.write_text(yaml.safe_dump({**data, "tracking": {"uri": uri}}))
    agent = AgentProcess(slurm_cluster, resolved_profile_json(slurm_cluster, profile), tmp_path / "agent.log")
    store = QueueStore(f"sqlite:///{tmp_path}/queue.db")
    try:
        assert (up := orch(slurm_cluster, *server)).returncode == 0, up.stdout + up.stderr
        queued = orch(slurm_cluster, "submit", str(SWEEPS["avae"]), "--cluster", str(profile), "--yes")
        assert queued.returncode == 0, queued.stdout + queued.stderr
        sweep_id = queued.stdout.split("queued sweep ", 1)[1].split()[0]
        assert orch(slurm_cluster, "tracking", "down", "--state-dir", str(state)).returncode == 0
        agent.start()
        deadline = time.monotonic() + 120
        while not store.events(sweep_id, ["submit-deferred"]):
            assert agent.alive() and time.monotonic() < deadline, (tmp_path / "agent.log").read_text()[-3000:]
            time.sleep(1)
        row = store.get(sweep_id)
        assert row.state == SweepState.QUEUED and "submit deferred: tracking.uri" in row.reason, row
        assert "connection refused" in row.reason and not row.job_ids
        assert (up := orch(slurm_cluster, *server)).returncode == 0, up.stdout + up.stderr
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while store.get(sweep_id).state not in TERMINAL:
            assert agent.alive() and time.monotonic() < deadline, (tmp_path / "agent.log").read_text()[-3000:]
            time.sleep(2)
        row = store.get(sweep_id)
        kinds = [e["kind"] for e in store.events(sweep_id)]
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()], f"tags.`orch.sweep_id` = '{sweep_id}'")
    finally:
        agent.kill()
        store.close()
        orch(slurm_cluster, "tracking", "down", "--state-dir", str(state))
    assert row.state == SweepState.SUCCEEDED, (row.state, row.reason)
    assert kinds.index("submit-deferred") < kinds.index("submitted") and "submit-failed" not in kinds, kinds
    assert len(sacct_jobs(slurm_cluster, [f"orch.{sweep_id}"])[f"orch.{sweep_id}"]) == 1
    # One parent run and its trial run, both finished: the deferred submit left no half-made parent behind.
    assert sorted(r.data.tags.get("orch.kind", "") for r in runs) == ["sweep", "trial"], [r.data.tags for r in runs]
    assert {r.info.status for r in runs} == {"FINISHED"}
