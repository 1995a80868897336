"""Preemption, requeues, node failure, a killed trial process and a corrupt checkpoint, on the real
local SLURM cluster: every trial resumes into ITS MLflow run, every step of every metric it reports is
logged exactly once, the steps re-done add up to at most one checkpoint interval per interruption, and
every attempt is in the job log."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.test_slurm_sweeps import finished, mlflow_runs, orch_env, profile_variant, sweep_folder, wait_for
from tests.conftest import REPO, run_orch
from tests.harness.s3 import BUCKET, S3Server, free_port

pytestmark = pytest.mark.integration

RECOVERY = REPO / "conf" / "sweeps" / "avae-slurm-recovery.yaml"
TIMELIMIT_EPOCHS, TIMELIMIT_STEP_S, TIMELIMIT_LEAD_S = 40, 2.5, 30  # 100 s of sleep: more than a 2-minute job allows
FAULTS = REPO / "conf" / "sweeps" / "avae-slurm-faults.yaml"
FAULTS_EPOCHS = 24
EPOCHS = 20  # three interruptions leave ~8 epochs of margin (14 left ~3: one slow preemption from finishing early)
EVERY = 2  # checkpoint interval (epochs): at most this many steps re-done per interruption


def submit(cluster: Any, profile: str | Path = "slurm-local", sweep: Path = RECOVERY) -> tuple[str, str]:
    result = run_orch(["submit", str(sweep), "--cluster", str(profile)], cwd=REPO, env=orch_env(cluster), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split("submitted sweep ", 1)[1].split()[0], result.stdout.split("SLURM job(s) ", 1)[1].split(";")[0]


def epochs(state: dict[str, Any]) -> list[int]:
    return [int(t.get("epoch") or 0) for t in state["trials"]]


def running_past(
    cluster: Any, sweep_id: str, epoch: int, timeout_s: float = 300, profile: str | Path = "slurm-local"
) -> dict[str, Any]:
    """Wait until every trial runs past `epoch`."""
    return wait_for(
        cluster,
        sweep_id,
        lambda s: (
            s["jobs"][0]["state"] == "RUNNING"
            and len(s["trials"]) == 2
            and min(epochs(s)) > epoch
            and all(t["state"] == "RUNNING" for t in s["trials"])
        ),
        timeout_s,
        profile,
    )


def resumed(cluster: Any, sweep_id: str, attempts: int, timeout_s: float = 300) -> None:
    """Wait until attempt number `attempts - 1` has started and every trial reported a new epoch in it."""
    folder = sweep_folder(cluster, sweep_id)
    deadline = time.monotonic() + timeout_s
    while True:
        ledger = json.loads((folder / "attempts.json").read_text()) if (folder / "attempts.json").exists() else []
        if len(ledger) >= attempts:
            started = ledger[attempts - 1]["started_at"]
            results = list((folder / "ray_results" / sweep_id).glob("*/result.json"))
            fresh = [
                r
                for r in results
                if any(json.loads(line).get("timestamp", 0) >= started for line in r.read_text().splitlines() if line.strip())
            ]
            if len(results) == 2 and len(fresh) == 2:
                return
        assert time.monotonic() < deadline, f"attempt {attempts - 1} did not resume training: {ledger}"
        cluster.run(["scontrol", "update", f"JobId={sweep_id_job(cluster, sweep_id)}", "StartTime=now"], check=False)
        time.sleep(2)


def sweep_id_job(cluster: Any, sweep_id: str) -> str:
    return json.loads((sweep_folder(cluster, sweep_id) / "jobs.json").read_text())[0]


def node_of(cluster: Any, job_id: str) -> str:
    return cluster.run(["squeue", "--noheader", "--jobs", job_id, "--format=%N"]).stdout.strip()


def preempt(cluster: Any, job_id: str) -> None:
    """A job in the high partition that needs every GPU of the sweep's node: SLURM preempts (requeues) ours."""
    node = node_of(cluster, job_id)
    high = cluster.fill_node_with_high_job(node, 3)
    deadline = time.monotonic() + 90
    while cluster.run(["squeue", "--noheader", "--jobs", high, "--format=%T"], check=False).stdout.strip() not in (
        "",
        "COMPLETED",
    ):
        assert time.monotonic() < deadline, "the high-partition job never ran"
        time.sleep(1)
    cluster.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=False)  # skip SLURM's requeue delay


def checkpoint_tune_restores(experiment: Path, trial_id: str) -> str | None:
    """The checkpoint folder Tune will hand a trial on restore: the newest its latest experiment state records
    (Ray keeps the trial's checkpoint manager pickled, hex-encoded, in experiment_state-*.json); None when the
    state says the trial has ended (Tune restores no checkpoint into a TERMINATED or ERROR trial)."""
    import re

    # Tune restores the state file with the greatest name (its timestamp), as here; not the newest by mtime: the
    # end-of-run sync rewrites every state file of the experiment at once, the older attempts' too.
    state = max(experiment.glob("experiment_state-*.json"), key=lambda p: p.name)
    for trial_json, run_json in json.loads(state.read_text())["trial_data"]:
        trial = json.loads(trial_json)
        if trial["trial_id"] == trial_id:
            if trial.get("status") in ("TERMINATED", "ERROR"):
                return None
            manager = bytes.fromhex(json.loads(run_json)["checkpoint_manager"]["value"])
            return max(f"checkpoint_{n.decode()}" for n in re.findall(rb"checkpoint_(\d{6})", manager))
    raise AssertionError(f"trial {trial_id} not in {state}")


def fallback_target(experiment: Path, epochs_left: int = 0) -> tuple[Path, str, list[str]] | None:
    """A trial Tune would restore, whose checkpoint to restore has an older one kept on disk and which has more
    than `epochs_left` epochs still to train: (its folder, that checkpoint, the kept ones); None when no trial has.
    A trial that ends before the job stops is not restored, so a target must not be close to its end."""
    if not list(experiment.glob("experiment_state-*.json")):
        return None
    for trial_dir in sorted(p for p in experiment.glob("*") if p.is_dir()):
        kept = sorted(p.name for p in trial_dir.glob("checkpoint_*"))
        try:
            restoring = checkpoint_tune_restores(experiment, trial_dir.name)
            reported = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]
        except (AssertionError, ValueError, KeyError, OSError):  # not in the state yet, or mid-write
            continue
        epoch = max((int(r.get("training_iteration") or 0) for r in reported), default=0)
        if restoring in kept[1:] and EPOCHS - epoch > epochs_left:
            return trial_dir, restoring, kept
    return None


def job_processes_gone(job_id: str, timeout_s: float = 120) -> None:
    """Wait until no process of the SLURM job is left on the machine (Ray's daemonised workers outlive the job's SLURM
    state here; each carries the job's SLURM_JOB_ID in its environment): then nothing writes to its experiment."""

    def left() -> list[int]:
        return [int(proc.name) for proc in Path("/proc").iterdir() if proc.name.isdigit() and _of_job(proc, job_id)]

    deadline = time.monotonic() + timeout_s  # bound on the wait, not a verdict
    while pids := left():
        assert time.monotonic() < deadline, f"processes {pids} of job {job_id} still live {timeout_s:g} s after it stopped"
        time.sleep(1)


def assert_every_metric_once(client: Any, run_id: str, epochs: int) -> None:
    """Every metric the trainable reported (all of the run's metrics but orch's own recovery figures): no step
    logged twice, none beyond the last epoch, and the per-epoch ones (val_loss, epoch_time_s, ...) at every step."""
    keys = [key for key in client.get_run(run_id).data.metrics if not key.startswith("orch_")]
    assert {"val_loss", "epoch_time_s"} <= set(keys), keys
    for key in keys:
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert len(steps) == len(set(steps)) and set(steps) <= set(range(1, epochs + 1)), (key, steps)
        if steps[:1] == [1]:  # reported from the first epoch on: at every step, exactly once
            assert steps == list(range(1, epochs + 1)), (key, steps)


def assert_exactly_once(
    cluster: Any,
    sweep_id: str,
    interruptions: int,
    epochs: int = EPOCHS,
    tracking_uri: str | None = None,
    signalless: int = 0,
) -> None:
    """One FINISHED run per trial, every metric step once, every attempt's log, and the steps re-done within the
    promise of docs/recovery.md: one checkpoint interval per interruption, two for each of the `signalless` ones among
    them (scontrol requeue, node failure, scancel: Tune restores the newest checkpoint its experiment state knows,
    which may lag the newest on disk by an interval however fast the machine is)."""
    from mlflow.tracking import MlflowClient

    parent, children = mlflow_runs(cluster, sweep_id, tracking_uri)
    assert len(children) == 2, [c.data.tags.get("orch.trial_id") for c in children]  # one run per trial, never a new one
    client = MlflowClient(tracking_uri=tracking_uri or f"sqlite:///{cluster.dir}/mlflow.db")
    for child in children:
        assert child.info.status == "FINISHED", child.info
        assert_every_metric_once(client, child.info.run_id, epochs)
        assert child.data.tags.get("orch.resumed") == "true" and int(child.data.tags["orch.attempt"]) >= 1
        logs = [a.path for a in client.list_artifacts(child.info.run_id, "logs")]
        assert any(path.endswith("_log.out") for path in logs) and "logs/attempts.json" in logs, logs  # every attempt's log
        redone = client.get_metric_history(child.info.run_id, "orch_redone_steps")
        assert sum(m.value for m in redone) <= EVERY * (interruptions + signalless), [m.value for m in redone]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics.get("orch_attempts", 0) >= 2 and "gpu_hours_lost_to_preemption" in parent.data.metrics


def test_preemptions_requeue_and_corrupt_checkpoint_resume_into_the_same_runs(slurm_cluster: Any) -> None:
    sweep_id, job_id = submit(slurm_cluster)
    running_past(slurm_cluster, sweep_id, 2)
    preempt(slurm_cluster, job_id)  # 1: preempted by the high partition
    resumed(slurm_cluster, sweep_id, 2)
    preempt(slurm_cluster, job_id)  # 2: again
    resumed(slurm_cluster, sweep_id, 3)
    # 3: `scontrol requeue`; once the job has stopped, the checkpoint Tune will restore for one trial (the newest its
    # experiment state knows, which can lag the newest on disk by a few checkpoints) is corrupted: that trial must
    # fall back to an older one. Requeued once Tune's state names, for some trial, a checkpoint with an older one kept.
    experiment = sweep_folder(slurm_cluster, sweep_id) / "ray_results" / sweep_id
    deadline = time.monotonic() + 120
    while fallback_target(experiment, epochs_left=3) is None:  # the requeue's signal comes within an epoch or two
        assert time.monotonic() < deadline, "no trial has an older checkpoint kept than the one Tune would restore"
        time.sleep(1)
    # Requeued HELD, so that it restarts only once the checkpoint is corrupted: the job's processes outlive its
    # SLURM state here (proctrack/linuxproc does not follow Ray's daemonised workers), and Tune's last experiment
    # state is only known once nothing writes to the experiment any more.
    slurm_cluster.run(["scontrol", "requeuehold", job_id])
    stopped = wait_for(slurm_cluster, sweep_id, lambda s: s["jobs"][0]["state"] not in ("RUNNING", "COMPLETING"), 120)
    assert stopped["jobs"][0]["state"] in ("PENDING", "REQUEUED", "REQUEUE_HOLD"), stopped
    job_processes_gone(job_id)
    target = fallback_target(experiment)
    assert target is not None, "Tune's experiment state moved back"
    trial_dir, restoring, kept = target
    with open(trial_dir / restoring / "state.pt", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00" * 64)
    corrupted = True  # the fallback re-does up to one more checkpoint interval
    slurm_cluster.run(["scontrol", "release", job_id])
    slurm_cluster.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=False)
    state = wait_for(slurm_cluster, sweep_id, finished, 600)
    assert state["jobs"][0]["state"] == "COMPLETED", state
    attempts = slurm_cluster.run(
        ["sacct", "--noheader", "--allocations", "--duplicates", "--parsable2", "-j", job_id, "--format=State"]
    ).stdout.split()
    assert len(attempts) >= 4, attempts  # three interruptions, then the attempt that finished
    assert_exactly_once(slurm_cluster, sweep_id, interruptions=3 + int(corrupted), signalless=1)  # the scontrol requeue
    # The fallback itself ran: the trial's run names the corrupt checkpoint and the older one it resumed from.
    from mlflow.tracking import MlflowClient

    runs_of = json.loads((sweep_folder(slurm_cluster, sweep_id) / "mlflow_runs.json").read_text())
    client = MlflowClient(f"sqlite:///{slurm_cluster.dir}/mlflow.db")
    tags = client.get_run(runs_of[trial_dir.name]).data.tags
    fallback = tags.get("orch.checkpoint_fallback", "")
    corrupt = fallback.partition(" is corrupt ")[0]
    used = fallback.rpartition(" resumed from ")[2]  # "<older checkpoint> (epoch N)"
    assert corrupt.endswith(restoring) and used.split()[0].rsplit("/", 1)[-1] in kept, fallback
    assert restoring not in used, fallback
    other = next(name for name in runs_of if name != trial_dir.name)
    assert "orch.checkpoint_fallback" not in client.get_run(runs_of[other]).data.tags
    log = "".join(p.read_text() for p in (sweep_folder(slurm_cluster, sweep_id) / "submitit").glob("*/*_log.out"))
    for attempt in (1, 2, 3):
        assert f"attempt {attempt} (SLURM job {job_id}, restart {attempt})" in log, log[-3000:]
    assert "previous attempt: USR2 (preemption); trials checkpointed" in log, log[-3000:]
    ledger = json.loads((sweep_folder(slurm_cluster, sweep_id) / "attempts.json").read_text())
    assert [entry["attempt"] for entry in ledger] == list(range(len(ledger))) and len(ledger) >= 4
    # Every checkpoint carries the identity record: trial, its MLflow run, the attempt that wrote it.
    import torch

    runs = json.loads((sweep_folder(slurm_cluster, sweep_id) / "mlflow_runs.json").read_text())
    for folder in sorted(p for p in experiment.glob("*") if p.is_dir()):
        newest = max(folder.glob("checkpoint_*"), key=lambda p: p.name)
        identity = torch.load(newest / "state.pt", map_location="cpu", weights_only=True)["extra"]["identity"]
        assert identity["mlflow_run_id"] == runs[identity["trial_id"]] and identity["slurm_job_id"] == job_id, identity
        assert identity["attempt_token"] == ledger[-1]["token"], (identity, ledger[-1])


@dataclass
class TeamTracking:
    uri: str
    s3: S3Server
    s3_environment: dict[str, str]
    up_args: list[str]
    state: Path

    def stop_server(self) -> None:
        """`orch tracking down`: the server stopped by the pid it recorded."""
        down = run_orch(["tracking", "down", "--state-dir", str(self.state)], cwd=self.state, timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr

    def start_server(self) -> None:
        up = run_orch(self.up_args, cwd=self.state, env=self.s3_environment, timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr


@pytest.fixture(scope="module")
def team_tracking(slurm_cluster: Any, tmp_path_factory: pytest.TempPathFactory):
    """The team's tracking stack: `orch tracking up` (a real `mlflow server`, artifacts proxied to a real
    S3 API endpoint, moto) bound to the host side of the first node's veth pair, which both compute
    nodes reach through their default route (and the test, as the laptop, too)."""
    s3 = S3Server(free_port())
    environment = s3.environment("AKIAORCHRECOVERY", "orch-recovery-secret")
    s3.start()
    state = tmp_path_factory.mktemp("team-tracking")
    try:
        s3.client(environment).create_bucket(Bucket=BUCKET)
        host = slurm_cluster.nodes[0]["host_address"]
        port = free_port(host)
        team = TeamTracking(
            f"http://{host}:{port}",
            s3,
            environment,
            [
                "tracking",
                "up",
                "--host",
                host,
                "--port",
                str(port),
                "--artifacts-destination",
                f"s3://{BUCKET}/recovery",
                "--state-dir",
                str(state),
            ],
            state,
        )
        team.start_server()
        yield team
    finally:
        run_orch(["tracking", "down", "--state-dir", str(state)], cwd=state, timeout=60)  # by the pid it recorded
        s3.stop()


def test_node_failure_mid_trial_requeues_on_the_other_node_tracked_on_the_server_with_artifacts_on_s3(
    slurm_cluster: Any, team_tracking: TeamTracking, tmp_path: Path
) -> None:
    """A node taken down under the sweep; the sweep is tracked on the team's server (not the shared SQLite
    file), so the requeued attempt on the OTHER node re-attaches to the same runs over the node network."""
    profile = profile_variant(tmp_path, "slurm-local-team", tracking={"uri": team_tracking.uri})
    sweep_id, job_id = submit(slurm_cluster, profile)
    running_past(slurm_cluster, sweep_id, 2, profile=profile)
    node = node_of(slurm_cluster, job_id)
    slurm_cluster.run(["scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=orch-test"])
    try:
        deadline = time.monotonic() + 120
        while node_of(slurm_cluster, job_id) in ("", node):  # requeued, then started on the other node
            assert time.monotonic() < deadline, slurm_cluster.run(["squeue", "-j", job_id], check=False).stdout
            # A node failing under a launching job can make SLURM requeue it HELD ("launch failed requeued held"):
            # `orch status` releases it, as a user looking at the sweep would; StartTime=now skips the requeue delay.
            shown = run_orch(["status", sweep_id, "--cluster", str(profile)], cwd=REPO, env=orch_env(slurm_cluster))
            assert shown.returncode == 0, shown.stdout + shown.stderr
            slurm_cluster.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=False)
            time.sleep(1)
    finally:
        slurm_cluster.run(["scontrol", "update", f"NodeName={node}", "State=RESUME"], check=False)
    state = wait_for(slurm_cluster, sweep_id, finished, 600, profile)
    assert state["jobs"][0]["state"] == "COMPLETED", state
    assert_exactly_once(slurm_cluster, sweep_id, interruptions=1, tracking_uri=team_tracking.uri, signalless=1)
    # Checkpoints and every attempt's logs reached S3 through the server, under each trial's ONE run.
    _, children = mlflow_runs(slurm_cluster, sweep_id, team_tracking.uri)
    keys = team_tracking.s3.keys("recovery/", team_tracking.s3_environment)
    for child in children:
        assert child.info.artifact_uri.startswith("mlflow-artifacts:"), child.info.artifact_uri
        run_keys = [k for k in keys if f"/{child.info.run_id}/artifacts/" in k]
        assert any(k.endswith("/artifacts/checkpoint/state.pt") for k in run_keys), run_keys
        assert any(k.endswith("/artifacts/logs/attempts.json") for k in run_keys), run_keys
        assert any("/artifacts/logs/" in k and k.endswith("_log.out") for k in run_keys), run_keys


def test_tracking_server_down_then_s3_refusing_uploads_mid_sweep_loses_and_doubles_nothing(
    slurm_cluster: Any, team_tracking: TeamTracking, tmp_path: Path
) -> None:
    """The team's tracking server stopped while a SLURM sweep trains two more epochs (a checkpoint comes every two),
    then S3 refusing uploads for two more: no trial fails, every metric the trials report is in their runs once per
    step, and the checkpoints and logs the faults held back arrive on S3 afterwards. Each fault lasts until the event
    it needs (epochs trained through it, read from the trials' own results on the shared filesystem), not a fixed
    time: on a busy machine it lasts longer, never shorter than the work it must hold back."""
    profile = profile_variant(tmp_path, "slurm-local-faults", tracking={"uri": team_tracking.uri})
    sweep_id, job_id = submit(slurm_cluster, profile, FAULTS)
    running_past(slurm_cluster, sweep_id, 2, profile=profile)
    before = trained_epochs(slurm_cluster, sweep_id)
    team_tracking.stop_server()
    try:
        during_server = trained_past(slurm_cluster, sweep_id, min(before) + 2)
    finally:
        team_tracking.start_server()
    team_tracking.s3.stop()
    try:
        during_s3 = trained_past(slurm_cluster, sweep_id, min(during_server) + 2)
    finally:
        team_tracking.s3.start()
    # Both faults hit a training sweep: its trials went on through each (and checkpointed, every 2 epochs).
    assert max(during_s3) < FAULTS_EPOCHS, ("the sweep was still training when the faults ended", before, during_s3)
    state = wait_for(slurm_cluster, sweep_id, finished, 600, profile)
    assert state["jobs"][0]["state"] == "COMPLETED" and state["jobs"][0]["restarts"] == 0, state
    assert sorted(t["state"] for t in state["trials"]) == ["TERMINATED", "TERMINATED"], state
    from mlflow.tracking import MlflowClient

    parent, children = mlflow_runs(slurm_cluster, sweep_id, team_tracking.uri)
    client = MlflowClient(team_tracking.uri)
    assert len(children) == 2 and parent.info.status == "FINISHED"
    keys = team_tracking.s3.keys("recovery/", team_tracking.s3_environment)
    for child in children:
        assert child.info.status == "FINISHED" and "orch.error" not in child.data.tags, child.data.tags
        assert_every_metric_once(client, child.info.run_id, FAULTS_EPOCHS)
        run_keys = [k for k in keys if f"/{child.info.run_id}/artifacts/" in k]
        assert any(k.endswith("/artifacts/checkpoint/state.pt") for k in run_keys), run_keys
        assert any(k.endswith("/artifacts/logs/attempts.json") for k in run_keys), run_keys
    trial_dirs = [p for p in (sweep_folder(slurm_cluster, sweep_id) / "ray_results" / sweep_id).glob("*") if p.is_dir()]
    assert trial_dirs and not any((p / "error.txt").exists() for p in trial_dirs), "a trial failed and was retried"


def trained_epochs(cluster: Any, sweep_id: str) -> list[int]:
    """Each trial's last reported epoch, from its Tune results on the shared filesystem (no tracking server needed);
    a line still being written is skipped."""
    reached = []
    for path in (sweep_folder(cluster, sweep_id) / "ray_results" / sweep_id).glob("*/result.json"):
        iterations = [0]
        for line in path.read_text().splitlines():
            try:
                iterations.append(int(json.loads(line).get("training_iteration") or 0))
            except ValueError:
                continue
        reached.append(max(iterations))
    return reached


def trained_past(cluster: Any, sweep_id: str, epoch: int, timeout_s: float = 300) -> list[int]:
    """Wait until both trials have reported `epoch` or later; their epochs then."""
    deadline = time.monotonic() + timeout_s  # bound on the wait, not a verdict
    while len(reached := trained_epochs(cluster, sweep_id)) < 2 or min(reached) < epoch:
        assert time.monotonic() < deadline, f"the trials did not train to epoch {epoch}: {reached}"
        time.sleep(0.5)
    return reached


def _of_job(proc: Path, job_id: str) -> bool:
    """A process of that SLURM job: Ray's workers inherit the job's environment, its SLURM_JOB_ID included."""
    try:
        return f"SLURM_JOB_ID={job_id}".encode() in (proc / "environ").read_bytes().split(b"\0")
    except OSError:  # gone meanwhile
        return False


def _is_trial_actor(proc: Path, job_id: str) -> bool:
    """A Ray trial actor (`ray::ResourceTrainable.train`) of THIS test's SLURM job. Never another Ray on the machine
    (a researcher's `orch run` beside the suite)."""
    try:
        title = (proc / "cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return title.startswith(b"ray::") and b"Trainable" in title and _of_job(proc, job_id)


def test_time_limit_checkpoints_and_requeues(slurm_cluster: Any, tmp_path: Path) -> None:
    """A sweep that cannot fit in one job by construction, whatever the machine's speed: two trials of a lab's class
    trainable whose 40 epochs each sleep 2.5 s (at least 100 s of training), under a 2-minute limit whose USR2 comes
    30 s before the end or earlier (SLURM sends a `--signal` early, never late), so at most 90 s into the job. The job
    checkpoints on the signal, requeues itself, and the trials finish in their own runs with every step once."""
    from mlflow.tracking import MlflowClient

    from tests.byo.test_lab_slurm import _ended, _orch, _wait
    from tests.harness.lab_workspace import make_lab

    profile = yaml.safe_load(Path(REPO / "conf" / "clusters" / "slurm-local.yaml").read_text())
    profile["slurm"].update(time_limit_min=2, min_time_limit_min=2, signal_lead_s=TIMELIMIT_LEAD_S, max_requeues=8)
    lab = make_lab(
        tmp_path / "lab-repo", epochs=TIMELIMIT_EPOCHS, step_s=TIMELIMIT_STEP_S, lrs=(0.2, 0.3), profiles={"slurm": profile}
    )
    assert TIMELIMIT_EPOCHS * TIMELIMIT_STEP_S > 2 * 60 - TIMELIMIT_LEAD_S  # the construction: more work than one job allows
    done = _orch(slurm_cluster, lab, "submit", "conf/sweeps/lab-cls.yaml", "--cluster", "slurm")
    assert done.returncode == 0, done.stdout + done.stderr
    sweep_id = done.stdout.split("submitted sweep ", 1)[1].split()[0]
    state = _wait(slurm_cluster, lab, {"cls": sweep_id}, _ended, "the sweep's end after its requeues", timeout_s=900)["cls"]
    assert [job["state"] for job in state["jobs"]] == ["COMPLETED"], state
    attempts = json.loads((sweep_folder(slurm_cluster, sweep_id) / "attempts.json").read_text())
    assert len(attempts) >= 2, attempts
    log = "".join(p.read_text() for p in (sweep_folder(slurm_cluster, sweep_id) / "submitit").glob("*/*_log.*"))
    assert "restart 1" in log and "previous attempt: USR2 (time limit)" in log, log[-2000:]

    client = MlflowClient(f"sqlite:///{slurm_cluster.dir}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("quad-cls").experiment_id], f"tags.`orch.sweep_id` = '{sweep_id}'")
    parents = [r for r in runs if r.data.tags["orch.kind"] == "sweep"]
    trials = [r for r in runs if r.data.tags["orch.kind"] == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", parents
    assert parents[0].data.metrics.get("orch_attempts", 0) >= 2, parents[0].data.metrics
    assert len(trials) == 2, "one run per trial, never a new one after a requeue"
    for run in trials:
        assert run.info.status == "FINISHED" and run.data.tags.get("orch.resumed") == "true", run.data.tags
        assert int(run.data.tags["orch.attempt"]) >= 1, run.data.tags
        steps = [int(m.step) for m in client.get_metric_history(run.info.run_id, "loss")]
        assert sorted(steps) == list(range(1, TIMELIMIT_EPOCHS + 1)), ("every step once", steps)
        logs = [a.path for a in client.list_artifacts(run.info.run_id, "logs")]
        assert any(path.endswith("_log.out") for path in logs) and "logs/attempts.json" in logs, logs  # every attempt's log
        redone = [m.value for m in client.get_metric_history(run.info.run_id, "orch_redone_steps")]
        assert sum(redone) <= 2 * (len(attempts) - 1), ("checkpointed on the signal, or every epoch", redone)


def test_killed_trial_is_retried_then_the_cancelled_sweep_resumes_in_the_same_runs(slurm_cluster: Any) -> None:
    """Two faults on one sweep (one sweep, not two: the suite's time): a trial's Ray actor SIGKILLed, which Tune
    retries from its checkpoint inside the same job; then the job cancelled without a word, which `orch resume`
    continues (refused while the job lives and when the sweep's config changed)."""
    sweep_id, job_id = submit(slurm_cluster)
    running_past(slurm_cluster, sweep_id, 3)
    deadline = time.monotonic() + 30
    while not (victims := [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_trial_actor(p, job_id)]):
        assert time.monotonic() < deadline, "no trial actor process found"
        time.sleep(0.2)
    os.kill(victims[0], signal.SIGKILL)  # by PID: one trial's Ray actor, of this job
    # Tune's retry ran in this job's first attempt: a trial run's attempt tag counts the failure (Tune retries +
    # SLURM requeues), and both trials train past where they were.
    deadline = time.monotonic() + 180
    while max(int(c.data.tags.get("orch.attempt", 0)) for c in mlflow_runs(slurm_cluster, sweep_id)[1]) < 1:
        assert time.monotonic() < deadline, "the killed trial was not retried"
        time.sleep(2)
    retried = running_past(slurm_cluster, sweep_id, 5)
    assert [job["job_id"] for job in retried["jobs"]] == [job_id], retried
    assert len(json.loads((sweep_folder(slurm_cluster, sweep_id) / "attempts.json").read_text())) == 1

    busy = run_orch(["resume", sweep_id, "--cluster", "slurm-local"], cwd=REPO, env=orch_env(slurm_cluster))
    assert busy.returncode == 2 and "still has live jobs" in busy.stderr, busy.stdout + busy.stderr
    slurm_cluster.run(["scancel", job_id])  # the job is gone without a word from us: runs stay RUNNING
    deadline = time.monotonic() + 60
    while slurm_cluster.run(["squeue", "--noheader", "--jobs", job_id, "--format=%T"], check=False).stdout.strip() not in (
        "",
        "CANCELLED",
    ):
        assert time.monotonic() < deadline
        time.sleep(1)
    import subprocess
    import sys

    changed = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.login",
            "resume",
            str(Path(slurm_cluster.dir) / "remote"),
            sweep_id,
            "--config-hash",
            "0" * 64,
        ],
        cwd=REPO,
        env=slurm_cluster.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert changed.returncode == 2 and "changed since sweep" in changed.stdout and "--force" in changed.stdout, changed.stdout
    resumed_run = run_orch(["resume", sweep_id, "--cluster", "slurm-local"], cwd=REPO, env=orch_env(slurm_cluster), timeout=180)
    assert resumed_run.returncode == 0 and "resumed sweep" in resumed_run.stdout, resumed_run.stdout + resumed_run.stderr
    assert "2 trial(s) continue" in resumed_run.stdout, resumed_run.stdout
    state = wait_for(slurm_cluster, sweep_id, finished, 600)
    assert [job["state"] for job in state["jobs"]][-1] == "COMPLETED" and len(state["jobs"]) == 2, state
    assert {t["state"] for t in state["trials"]} == {"TERMINATED"}, state
    # The killed trial lost at most a checkpoint interval to the kill (Tune retries from the trial's own newest) and
    # two to the cancel (no signal: the experiment state's checkpoint).
    assert_exactly_once(slurm_cluster, sweep_id, interruptions=2, signalless=1)


def test_drill_on_a_partition_without_grace_time_says_a_preemption_gives_nothing(slurm_cluster: Any) -> None:
    """The partition the sweep runs in has no GraceTime (set so with scontrol for this test): a preempted job gets no
    signal, so the drill must not call the checkpoint a fit for preemption; it says what a preemption loses."""
    slurm_cluster.run(["scontrol", "update", "PartitionName=low", "GraceTime=0"])
    try:
        result = run_orch(
            ["drill", "--cluster", "slurm-local", "--sweep", str(RECOVERY), "--preempt-with", "high"],
            cwd=REPO,
            env=orch_env(slurm_cluster),
            timeout=600,
        )
    finally:
        slurm_cluster.run(["scontrol", "update", "PartitionName=low", "GraceTime=30"], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "PreemptMode=REQUEUE, GraceTime=0 s" in out and "preempted by a 'high' job: requeued" in out, out
    assert "time limit: USR2 60 s before the end: fits" in out, out
    assert "preemption: no GraceTime, a preempted job stops at once and loses the work since its last checkpoint" in out
    assert "(checkpoint.every_epochs: 2, about " in out and "s of training): checkpoint more often to lose less" in out, out
    assert "GraceTime: fits" not in out, out


def test_drill_reports_signal_preemption_and_checkpoint_time(slurm_cluster: Any) -> None:
    result = run_orch(
        ["drill", "--cluster", "slurm-local", "--sweep", str(RECOVERY), "--preempt-with", "high"],
        cwd=REPO,
        env=orch_env(slurm_cluster),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "signal: delivered in" in out, out
    assert "PreemptMode=REQUEUE, GraceTime=30 s" in out and "preempted by a 'high' job: requeued" in out, out
    assert "checkpoint of avae:" in out, out
    assert "time limit: USR2 60 s before the end: fits" in out and "preemption: 30 s of GraceTime: fits" in out, out
    jobs = slurm_cluster.run(
        ["squeue", "--noheader", "--name", "orch-drill.slurm-local", "--states=PENDING,RUNNING", "--format=%i"], check=False
    ).stdout.split()
    assert not jobs, f"the canary is still queued: {jobs}"
