"""Ctrl-C during `orch run` of a lab's own project, then `orch resume`: the interrupted trials are KILLED (in
the results table and in MLflow, no "best trial"), the last line says how to resume, and `orch resume`
continues them from their checkpoints in the same MLflow runs, every step logged once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import assert_one_error_line, run_orch
from tests.harness.lab_workspace import make_lab

EPOCHS, STEP_S = 40, 0.25


def _interrupt_after(lab: Path, epochs_seen: int, log: Path) -> subprocess.CompletedProcess[str]:
    """`orch run` in its own process group, Ctrl-C'd like a terminal does (SIGINT to the whole group) once
    both trials have reported `epochs_seen` epochs."""
    with log.open("w") as out:
        orch = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.laptop.cli", "run", "conf/sweeps/lab-fn.yaml"],
            cwd=lab,
            env={**os.environ, "COLUMNS": "200"},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 240  # bound on the wait, not a verdict
            while log.read_text().count(f"epoch {epochs_seen} ") < 2:
                assert orch.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"both trials did not report epoch {epochs_seen} in 240 s: {log.read_text()}"
                time.sleep(0.5)
            assert orch.poll() is None, log.read_text()
        except BaseException:
            if orch.poll() is None:  # the run this test started, by its process group
                os.killpg(orch.pid, signal.SIGKILL)
                orch.wait(timeout=60)
            raise
        os.killpg(orch.pid, signal.SIGINT)
        rc = orch.wait(timeout=120)
    return subprocess.CompletedProcess(orch.args, rc, log.read_text(), "")


@pytest.mark.integration
def test_ctrl_c_then_orch_resume_continues_the_same_runs(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    lab = make_lab(tmp_path / "lab-repo", epochs=EPOCHS, step_s=STEP_S, lrs=(0.1, 0.3))
    stopped = _interrupt_after(lab, 4, tmp_path / "run.log")
    out = stopped.stdout
    assert stopped.returncode == 130, out
    sweep_id = next(
        line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("sweep ") and ": 2 trials" in line
    )
    last = [line for line in out.splitlines() if line.strip()][-1]
    assert last == (
        f"error: sweep {sweep_id} interrupted: 2 of 2 trials unfinished, their runs KILLED; "
        f"resume it with: orch resume {sweep_id}"
    ), out
    table = out[out.index("┏") : out.index("└")]
    assert table.count("KILLED") == 2 and "FINISHED" not in table and "best trial" not in out, out
    assert "Tuner.restore" not in out and "Traceback" not in out, out

    client = MlflowClient(f"sqlite:///{lab}/.orch/mlflow.db")
    experiment = client.get_experiment_by_name("quad-fn").experiment_id
    trials = {r.info.run_id: r for r in client.search_runs([experiment], "tags.`orch.kind` = 'trial'")}
    parent = client.search_runs([experiment], "tags.`orch.kind` = 'sweep'")[0]
    assert len(trials) == 2 and {r.info.status for r in trials.values()} == {"KILLED"}, trials
    assert parent.info.status == "KILLED"
    logged_before = {run_id: len(client.get_metric_history(run_id, "loss")) for run_id in trials}
    assert all(n >= 4 for n in logged_before.values()), logged_before

    # Refused, with nothing changed: from another folder, and with the sweep file changed since it ran.
    assert_one_error_line(run_orch(["resume", sweep_id], cwd=tmp_path), f"no sweep {sweep_id} ran here")
    sweep_file = lab / "conf" / "sweeps" / "lab-fn.yaml"
    original = sweep_file.read_text()
    sweep_file.write_text(original + "# changed\n")
    assert_one_error_line(run_orch(["resume", sweep_id], cwd=lab), "lab-fn.yaml or its project file changed", "--force")
    sweep_file.write_text(original)
    assert {r.info.status for r in client.search_runs([experiment], "tags.`orch.kind` = 'trial'")} == {"KILLED"}

    resumed = run_orch(["resume", sweep_id], cwd=lab, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "best trial" in resumed.stdout and resumed.stdout.count("FINISHED") == 2, resumed.stdout
    after = client.search_runs([experiment], "tags.`orch.kind` = 'trial'")
    assert {r.info.run_id for r in after} == set(trials), "the resumed trials continue in their own runs"
    for run in after:
        run_id = run.info.run_id
        assert run.info.status == "FINISHED" and run.data.tags.get("orch.resumed") == "true"
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(1, EPOCHS + 1))
        # The function trainable reports the epoch its checkpoint let it start from: it resumed, not restarted.
        started = {m.step: m.value for m in client.get_metric_history(run_id, "started_at_epoch")}
        first_new = logged_before[run_id] + 1
        assert started[1] == 0 and started[EPOCHS] >= logged_before[run_id] - 1 > 0, (started, logged_before)
        assert client.get_metric_history(run_id, "orch_redone_steps")[0].value <= 1, first_new
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"

    again = run_orch(["resume", sweep_id], cwd=lab)
    assert_one_error_line(again, f"sweep {sweep_id} ran to its end, nothing to resume")
