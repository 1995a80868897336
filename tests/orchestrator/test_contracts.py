"""Contracts with one owner: the wire between laptop and login node, the tracking-URI order, the
profile kinds, the profile-to-sbatch mapping for every job kind, atomic writes."""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from cluster.slurm.job_spec import SUBMIT_JOB_PREFIX, SWEEP_JOB_PREFIX, small_job, sweep_id_of, sweep_job, sweep_job_name
from orchestrator.kernel.config.models import (
    LocalProfile,
    RestSlurmProfile,
    SlurmSettings,
    SshSlurmProfile,
    TrackingConfig,
    parse_profile,
)
from orchestrator.kernel.errors import ConfigError, RemoteError, UsageError
from orchestrator.kernel.files import write_atomic
from orchestrator.laptop.state import LocalState
from orchestrator.laptop.tracking_uri import resolve_tracking
from orchestrator.login import wire


def _emitted(answer: wire.Answer | None = None, error: RemoteError | None = None) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        print("a line the command printed first")
        if error is not None:
            wire.emit_error(error)
        else:
            wire.emit(answer)  # type: ignore[arg-type]
    return out.getvalue()


def test_an_answer_crosses_the_wire_typed() -> None:
    sent = wire.SubmitAnswer(sweep_id="s-1", job_ids=["41", "42_0"], parent_run_id="r", experiment_id="e", bundle="/b")
    output = _emitted(sent)
    assert wire.printed_lines(output) == ["a line the command printed first"]
    received = wire.read(wire.SubmitAnswer, wire.decode(wire.find_answer(output) or "", "conf/clusters/c.yaml"), "c.yaml")
    assert received == sent


def test_an_error_crosses_the_wire_as_one_located_line() -> None:
    output = _emitted(error=RemoteError("slurm.partition", "invalid partition specified: nope", "use one of: low, high"))
    with pytest.raises(RemoteError) as caught:
        wire.decode(wire.find_answer(output) or "", "conf/clusters/c.yaml")
    assert (
        str(caught.value)
        == "conf/clusters/c.yaml: slurm.partition: invalid partition specified: nope; fix: use one of: low, high"
    )
    assert caught.value.exit_code == 2


def test_a_newer_login_node_answers_an_older_laptop_and_a_broken_one_says_so() -> None:
    newer = {"ok": True, "sweep_id": "s", "job_ids": [], "resumed_trials": ["t0"], "finished_trials": 1, "a_new_field": 3}
    assert wire.read(wire.ResumeAnswer, wire.checked(newer, "p"), "p").resumed_trials == ["t0"]
    with pytest.raises(RemoteError, match="answer lacks finished_trials"):
        wire.read(wire.ResumeAnswer, {"ok": True, "sweep_id": "s", "job_ids": [], "resumed_trials": []}, "p")
    with pytest.raises(RemoteError, match="not JSON"):
        wire.decode("{half", "p")


def test_one_tracking_uri_order_for_every_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    state = LocalState.in_directory(tmp_path)
    profile = TrackingConfig(uri="http://profile:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://environment:5000")
    assert resolve_tracking("http://flag:5000", profile, "p.yaml", state).source == "--tracking-uri"
    found = resolve_tracking(None, profile, "p.yaml", state)
    assert (found.uri, found.source) == ("http://environment:5000", "MLFLOW_TRACKING_URI")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    found = resolve_tracking(None, profile, "p.yaml", state)
    assert (found.uri, found.source) == ("http://profile:5000", "p.yaml: tracking.uri")
    embedded = resolve_tracking(None, TrackingConfig(), "p.yaml", state)
    assert embedded.embedded and embedded.uri == state.tracking_uri
    with pytest.raises(ConfigError, match="p.yaml: tracking.uri: a SLURM profile needs an MLflow tracking URI"):
        resolve_tracking(None, TrackingConfig(), "p.yaml")  # orch submit: no embedded default
    with pytest.raises(UsageError, match="pass --tracking-uri or set MLFLOW_TRACKING_URI"):
        resolve_tracking(None)  # orch tracking deliver


def test_a_profile_is_one_of_three_kinds() -> None:
    slurm = {"name": "c", "backend": "slurm", "remote": {"workdir": "/w"}, "slurm": {"partition": "low"}}
    assert isinstance(parse_profile({"name": "l"}), LocalProfile)
    assert isinstance(parse_profile(slurm), SshSlurmProfile)
    assert isinstance(parse_profile({**slurm, "login": {"host": "h"}}), SshSlurmProfile)
    rest = parse_profile({**slurm, "rest": {"url": "http://h:6820", "user": "u"}})
    assert isinstance(rest, RestSlurmProfile) and rest.rest.url == "http://h:6820"
    assert parse_profile(json.loads(rest.model_dump_json())) == rest  # what the laptop sends, read back the same


def test_every_job_kind_asks_slurm_through_the_one_mapping() -> None:
    settings = SlurmSettings(
        partition="low", account="lab", qos="normal", gpus_per_node=2, gpu_type="a100", signal_lead_s=90, constraint="ib"
    )
    sweep = sweep_job(settings, "s-1")
    args = sweep.sbatch_args()
    assert args[args.index("--job-name") + 1] == "orch.s-1" and sweep_id_of(sweep.name) == "s-1"
    params = sweep.submitit_parameters(["setup"])
    assert params["gres"] == "gpu:a100:2" and params["signal_delay_s"] == 90 and params["account"] == "lab"
    canary = small_job(settings, "orch-drill.c", 10, gpus=1, signal_lead_s=90, requeue=True, output="/w/log").sbatch_args()
    assert canary[canary.index("--gres") + 1] == "gpu:a100:1" and "--signal=USR2@90" in canary and "--open-mode=append" in canary
    for job in (sweep, small_job(settings, "orch-agent.c", 60), small_job(settings, f"{SUBMIT_JOB_PREFIX}s-1", 10)):
        fields = job.rest_fields({})
        assert fields["account"] == "lab" and fields["qos"] == "normal" and fields["partition"] == "low"
    assert sweep_job_name("s-1").startswith(SWEEP_JOB_PREFIX) and sweep_id_of("orch-agent.c") is None


def test_atomic_writes_keep_the_old_or_the_new_and_the_asked_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "ledger.json"
    write_atomic(path, "old")
    write_atomic(path, b"new", durable=False)
    assert path.read_text() == "new" and [p.name for p in path.parent.iterdir()] == ["ledger.json"]
    write_atomic(path, "secret", mode=0o600)
    assert (path.stat().st_mode & 0o777) == 0o600 and os.access(path, os.R_OK)


def test_the_drill_judges_each_interruption_by_what_it_gives() -> None:
    """A partition without GraceTime gives a preempted job nothing: the 60 s time-limit lead is no excuse."""
    from types import SimpleNamespace

    from orchestrator.laptop.cli import drill_verdicts
    from orchestrator.login.drill import verdicts

    no_grace = SimpleNamespace(
        checkpoint_s=2.0,
        checkpoint_bytes=1e6,
        checkpoint_on_signal_s=2.1,
        kind="class",
        grace_time_s=0.0,
        every_epochs=4,
        **verdicts(2.0, 60.0, 0.0, every_epochs=4, epoch_s=1.5),
    )
    assert (
        no_grace.fits_time_limit and not no_grace.fits_preemption and not no_grace.fits and no_grace.lost_on_preemption_s == 6.0
    )
    lines = drill_verdicts(no_grace, "avae")
    assert lines[1] == "time limit: USR2 60 s before the end: fits"
    assert "no GraceTime" in lines[2] and "checkpoint.every_epochs: 4, about 6 s" in lines[2], lines
    graced = verdicts(2.0, 60.0, 30.0, every_epochs=4, epoch_s=1.5)
    assert graced["fits"] and graced["budget_s"] == 30.0 and graced["lost_on_preemption_s"] is None
    assert not verdicts(20.0, 60.0, 30.0, 4, 1.5)["fits_preemption"]  # 20 s is not under half of 30 s
