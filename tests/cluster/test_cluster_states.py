"""States a real cluster reports that the test cluster did not show before: a node that powers up on demand
(SLURM power saving; the job is CONFIGURING while it boots) and a job SLURM holds after its launch failed.
Sweeps submitted directly and through the queue's agent live through both."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.testcluster.faults import clear_launch_failures, fail_next_launch
from cluster.testcluster.power import hold_boot, power_down, release_boot
from orchestrator.kernel.states import SweepState
from orchestrator.login.queue.agent import HOLD_RELEASED
from orchestrator.login.queue.store import QueueStore
from tests.cluster.test_slurm_sweeps import TINY, finished, mlflow_runs, orch_env, profile_variant, status, wait_for
from tests.conftest import REPO, run_orch
from tests.queue.test_queue_slurm import SWEEPS, AgentProcess, make_profile, resolved_profile_json

pytestmark = pytest.mark.integration


def job_states(cluster: Any, partition: str) -> dict[str, str]:
    out = cluster.run(["squeue", "-h", "-p", partition, "-o", "%i %j %T"], check=False).stdout
    return {name: state for _, name, state in (line.split() for line in out.splitlines() if line.strip())}


def test_sweeps_direct_and_queued_live_through_a_node_powering_up(slurm_cluster: Any, tmp_path: Path) -> None:
    power = slurm_cluster.extra["power_saving"]
    power_down(slurm_cluster.dir, power["node"])  # asleep (idle~): a job in its partition wakes it
    # Both sweeps' jobs wait in the closed partition, then wake the node together.
    slurm_cluster.run(["scontrol", "update", f"PartitionName={power['partition']}", "State=DOWN"])
    direct_profile = profile_variant(tmp_path, "slurm-power", slurm={"partition": power["partition"]})
    queue_profile = make_profile(tmp_path, "queue-power")
    data = yaml.safe_load(queue_profile.read_text())
    data["slurm"]["partition"] = power["partition"]
    queue_profile.write_text(yaml.safe_dump(data))

    queued = run_orch(
        ["submit", str(SWEEPS["avae"]), "--cluster", str(queue_profile), "--yes"], cwd=REPO, env=orch_env(slurm_cluster)
    )
    assert queued.returncode == 0, queued.stdout + queued.stderr
    queued_id = queued.stdout.split("queued sweep ", 1)[1].split()[0]
    direct = run_orch(["submit", str(TINY), "--cluster", str(direct_profile)], cwd=REPO, env=orch_env(slurm_cluster), timeout=180)
    assert direct.returncode == 0, direct.stdout + direct.stderr
    direct_id = direct.stdout.split("submitted sweep ", 1)[1].split()[0]

    agent = AgentProcess(slurm_cluster, resolved_profile_json(slurm_cluster, queue_profile), tmp_path / "agent.log")
    agent.start()
    store = QueueStore(f"sqlite:///{tmp_path}/queue.db")
    names = {f"orch.{direct_id}": "direct", f"orch.{queued_id}": "queued"}
    seen: dict[str, set[str]] = {"direct": set(), "queued": set()}
    during: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 120
        while not set(names) <= set(job_states(slurm_cluster, power["partition"])):
            assert time.monotonic() < deadline, (tmp_path / "agent.log").read_text()[-3000:]
            time.sleep(0.5)
        # The node's boot is held until both jobs were seen CONFIGURING and `during` was read (power.hold_boot, at
        # most 90 s): the test sees the boot however slow the machine, instead of racing a fixed 8 s boot.
        hold_boot(slurm_cluster.dir, power["node"])
        slurm_cluster.run(["scontrol", "update", f"PartitionName={power['partition']}", "State=UP"])
        deadline = time.monotonic() + 120  # bound on the wait, not a verdict
        while not all("RUNNING" in s for s in seen.values()):
            assert time.monotonic() < deadline, (seen, slurm_cluster.run(["sinfo", "-N"], check=False).stdout)
            for name, state in job_states(slurm_cluster, power["partition"]).items():
                if name in names:
                    seen[names[name]].add(state)
            if all("CONFIGURING" in s for s in seen.values()) and not during:
                # While the node boots: orch status does not call it ended, the agent keeps the sweep, its runs are open.
                during["status"] = status(slurm_cluster, direct_id, direct_profile)
                during["queued"] = store.get(queued_id).state
                during["parents"] = {sid: mlflow_runs(slurm_cluster, sid)[0].info.status for sid in (direct_id, queued_id)}
                release_boot(slurm_cluster.dir, power["node"])
            time.sleep(0.5)
        assert seen["direct"] >= {"CONFIGURING", "RUNNING"} and seen["queued"] >= {"CONFIGURING", "RUNNING"}, seen
        # sacct (what orch status reads) may already say RUNNING for a job squeue still shows CONFIGURING.
        assert [job["state"] for job in during["status"]["jobs"]] in (["CONFIGURING"], ["RUNNING"]), during
        assert during["queued"] in (SweepState.SUBMITTED, SweepState.RUNNING), during
        assert during["parents"] == {direct_id: "RUNNING", queued_id: "RUNNING"}, during

        state = wait_for(slurm_cluster, direct_id, finished, 420, direct_profile)
        assert [job["state"] for job in state["jobs"]] == ["COMPLETED"] and state["jobs"][0]["node_list"] == power["node"]
        deadline = time.monotonic() + 420
        while store.get(queued_id).state not in (SweepState.SUCCEEDED, SweepState.FAILED, SweepState.CANCELLED):
            assert time.monotonic() < deadline, (tmp_path / "agent.log").read_text()[-3000:]
            time.sleep(1)
        row = store.get(queued_id)
        events = [e["kind"] for e in store.events(sweep_id=queued_id)]
    finally:
        release_boot(slurm_cluster.dir, power["node"])
        agent.kill()
        store.close()
        slurm_cluster.run(["scontrol", "update", f"PartitionName={power['partition']}", "State=UP"], check=False)
    assert row.state == SweepState.SUCCEEDED, (row.state, row.reason)
    assert "failed" not in events, events
    for sweep_id in (direct_id, queued_id):
        parent, children = mlflow_runs(slurm_cluster, sweep_id)
        assert parent.info.status == "FINISHED" and {c.info.status for c in children} == {"FINISHED"}, sweep_id
    log = Path(power["log"]).read_text()
    assert f"resume {power['node']}: booting" in log, log


def held_reason(cluster: Any, sweep_id: str) -> str:
    return cluster.run(["squeue", "-h", "-n", f"orch.{sweep_id}", "-o", "%T|%r"], check=False).stdout.strip()


def wait_held(cluster: Any, sweep_id: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while "launch failed requeued held" not in (out := held_reason(cluster, sweep_id)).lower():
        assert time.monotonic() < deadline, out
        time.sleep(1)


def test_jobs_held_after_a_failed_launch_are_released_by_orch_status_and_by_the_agent(slurm_cluster: Any, tmp_path: Path) -> None:
    """Two launches that fail on their nodes (their Prolog fails): SLURM drains each node and requeues the job HELD,
    where it would stay forever. A direct sweep's hold is released by `orch status`, which says so; a queued sweep's
    by the agent, which records it in the queue's events. Once an admin resumes the nodes, both sweeps complete."""
    queue_profile = make_profile(tmp_path, "queue-held")
    fail_next_launch(slurm_cluster.dir, launches=2)
    agent = AgentProcess(slurm_cluster, resolved_profile_json(slurm_cluster, queue_profile), tmp_path / "agent.log")
    store = QueueStore(f"sqlite:///{tmp_path}/queue.db")
    try:
        direct = run_orch(["submit", str(TINY), "--cluster", "slurm-local"], cwd=REPO, env=orch_env(slurm_cluster), timeout=180)
        assert direct.returncode == 0, direct.stdout + direct.stderr
        direct_id = direct.stdout.split("submitted sweep ", 1)[1].split()[0]
        wait_held(slurm_cluster, direct_id)
        queued = run_orch(
            ["submit", str(SWEEPS["avae"]), "--cluster", str(queue_profile), "--yes"], cwd=REPO, env=orch_env(slurm_cluster)
        )
        assert queued.returncode == 0, queued.stdout + queued.stderr
        queued_id = queued.stdout.split("queued sweep ", 1)[1].split()[0]
        agent.start()
        # The queued sweep's job fails its launch on the other node; the agent's next tick releases the hold.
        deadline = time.monotonic() + 180
        while not (released := store.events(queued_id, kinds=[HOLD_RELEASED])):
            assert time.monotonic() < deadline, (
                held_reason(slurm_cluster, queued_id),
                (tmp_path / "agent.log").read_text()[-3000:],
            )
            time.sleep(1)
        assert "(launch failed requeued held): released" in released[0]["detail"], released
        # Nothing released the direct sweep's job: it is still held, and would stay so.
        assert "launch failed requeued held" in held_reason(slurm_cluster, direct_id).lower()
    except BaseException:
        agent.kill()  # the block below, which stops it otherwise, will not run
        store.close()
        raise
    finally:
        clear_launch_failures(slurm_cluster.dir)
        drained = slurm_cluster.run(["sinfo", "-h", "-N", "-t", "drain", "-o", "%N"], check=False).stdout.split()
        for node in set(drained):  # what an admin does about a node whose launches fail
            slurm_cluster.run(["scontrol", "update", f"NodeName={node}", "State=RESUME"], check=False)
    try:
        assert len(set(drained)) == 2, drained  # each failed launch drained its node
        shown = run_orch(["status", direct_id, "--cluster", "slurm-local"], cwd=REPO, env=orch_env(slurm_cluster))
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "was held by SLURM (launch failed requeued held): released" in " ".join(shown.stdout.split()), shown.stdout
        state = wait_for(slurm_cluster, direct_id, finished, 420)
        deadline = time.monotonic() + 420
        while not store.get(queued_id).state.terminal:
            assert time.monotonic() < deadline, (tmp_path / "agent.log").read_text()[-3000:]
            time.sleep(1)
        row = store.get(queued_id)
    finally:
        agent.kill()
        store.close()
    assert [job["state"] for job in state["jobs"]] == ["COMPLETED"], state
    assert row.state == SweepState.SUCCEEDED, (row.state, row.reason)
    for sweep_id in (direct_id, queued_id):
        parent, children = mlflow_runs(slurm_cluster, sweep_id)
        assert parent.info.status == "FINISHED" and {c.info.status for c in children} == {"FINISHED"}, sweep_id


def test_a_step_slurmd_could_not_launch_requeues_its_job_instead_of_failing_it(slurm_cluster: Any, tmp_path: Path) -> None:
    """The soak found it: a node's slurmd killed and started again around a job's start, the step's launch fails
    (`srun`: "Job credential expired") before the job's Python runs, and the job ended FAILED. Here the step
    launches while the node's slurmd is down. The batch script now requeues such a job
    (cluster/slurm/job_spec.step_guard_lines), which then completes."""
    import shlex

    from cluster.testcluster.faults import kill_slurmd, start_slurmd
    from tests.cluster.test_slurm_sweeps import submit, sweep_folder

    # A slow `module load` that the test ends: the batch script says it runs, then waits until the test has killed its
    # node's slurmd (at most 300 s, a bound, not a verdict), so its step launches while slurmd is down, however slow.
    started, gate = tmp_path / "batch-script-started", tmp_path / "launch-now"
    setup = (
        f"touch {shlex.quote(str(started))}; n=0; "
        f"while [ ! -e {shlex.quote(str(gate))} ] && [ $n -lt 1500 ]; do sleep 0.2; n=$((n + 1)); done"
    )
    slow = profile_variant(tmp_path, "slurm-slow-setup", remote={"setup": [setup]})
    sweep_id = submit(slurm_cluster, TINY, slow)

    def err_log() -> str:
        return "".join(p.read_text() for p in (sweep_folder(slurm_cluster, sweep_id) / "submitit").glob("*/*_log.err"))

    node = None
    try:
        deadline = time.monotonic() + 120  # bound on the wait, not a verdict
        while not started.exists():  # the batch script runs its setup: its step is not launched yet
            assert time.monotonic() < deadline, "the job's batch script never started"
            time.sleep(0.2)
        out = slurm_cluster.run(["squeue", "-h", "-n", f"orch.{sweep_id}", "-o", "%i %T %N"], check=False).stdout.split()
        assert len(out) == 3 and out[1] == "RUNNING", out
        job_id = out[0]
        assert kill_slurmd(slurm_cluster.dir, out[2]) is not None
        node = out[2]
        gate.touch()  # the step launches now, while the node's slurmd is down
        deadline = time.monotonic() + 180  # bound on the wait, not a verdict
        while "orch: the job step never started" not in err_log():  # srun failed; the batch script requeues the job
            assert time.monotonic() < deadline, f"the step launched with slurmd down did not fail: {err_log()[-2000:]}"
            time.sleep(0.5)
    finally:
        gate.touch()  # never leave a batch script waiting
        if node is not None:
            start_slurmd(slurm_cluster.dir, node)
    state = wait_for(
        slurm_cluster,
        sweep_id,
        lambda s: bool(s["jobs"]) and s["jobs"][0]["state"] in ("COMPLETED", "FAILED", "CANCELLED"),
        420,
        slow,
    )
    log = "".join(p.read_text() for p in (sweep_folder(slurm_cluster, sweep_id) / "submitit").glob("*/*_log.err"))
    assert state["jobs"][0]["state"] == "COMPLETED", (state, log[-2000:])
    assert "orch: the job step never started" in log and f"requeueing job {job_id}" in log, log[-2000:]
    attempts = slurm_cluster.run(
        ["sacct", "--noheader", "--allocations", "--duplicates", "--parsable2", "-j", job_id, "--format=State"]
    ).stdout.split()
    assert attempts[0] == "REQUEUED" and attempts[-1] == "COMPLETED", attempts
