"""The slurmrestd (JWT) transport: its submit job script with hostile values, token checks, and
submit/status/cancel through the real slurmrestd of the local test cluster."""

from __future__ import annotations

import base64
import io
import json
import stat
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.adaptors.slurmrest import SlurmRestClient, SlurmRestError, token_expiry
from orchestrator.kernel.config.models import RemoteSettings, SlurmSettings
from orchestrator.laptop.targets.rest_job import answer_of, submit_job_fields, submit_script
from tests.cluster.test_slurm_sweeps import LONG, TINY, mlflow_runs, orch_env
from tests.conftest import REPO, assert_one_error_line, run_orch

REST_PROFILE = REPO / "conf" / "clusters" / "slurm-rest-local.yaml"


def _tgz(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _jwt(exp: float) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'exp': int(exp), 'sun': 'root'})}.c2lnbmF0dXJl"


# ---------------------------------------------------------------------------- the submit job script
HOSTILE = ["a'; touch {marker}; echo '", "$(touch {marker})", "`touch {marker}`", 'x" ; touch {marker} ; "']


@pytest.mark.parametrize("hostile", HOSTILE)
def test_submit_script_unpacks_and_answers_with_hostile_values(tmp_path: Path, hostile: str) -> None:
    marker = tmp_path / "PWNED"
    value = hostile.format(marker=marker)
    workdir = tmp_path / f"work {value}"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Stand-ins: a 'python' that answers like orchestrator.login does, an 'scontrol' that records the Comment.
    python = bin_dir / f"py {value}".replace("/", "_")
    answer = {"ok": True, "sweep_id": "s-1", "job_ids": ["7"], "note": value}
    python.write_text(
        '#!/bin/bash\nprintf "%s\\n" "$@" > "$RECORD.argv"\nprintf "%s\\n" "$ORCH_HOSTILE" > "$RECORD.env"\n'
        "echo 'progress line'\ncat \"$RECORD.answer\"\n"
    )
    (tmp_path / "record.answer").write_text("ORCH-RESULT " + json.dumps(answer) + "\n")
    scontrol = bin_dir / "scontrol"
    scontrol.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$RECORD.scontrol"\n')
    for exe in (python, scontrol):
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    remote = RemoteSettings(workdir=str(workdir), python=str(python), env={"ORCH_HOSTILE": value})
    script = submit_script(remote, str(workdir), "s-1", _tgz({"cluster/__init__.py": "# code\n"}), _tgz({"bundle.json": "{}"}))
    (tmp_path / "job.sh").write_text(script)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "RECORD": str(tmp_path / "record"), "SLURM_JOB_ID": "42"}
    done = subprocess.run(["bash", str(tmp_path / "job.sh")], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert not marker.exists(), "a hostile value was executed by the submit job script"
    root = workdir / "sweeps" / "s-1"
    assert (root / "code" / "cluster" / "__init__.py").read_text() == "# code\n" and (root / "bundle.json").exists()
    assert not list(root.glob(".*.tgz")), "the archives are removed once unpacked"
    assert (tmp_path / "record.argv").read_text().splitlines() == ["-m", "orchestrator.login", "submit", str(root)]
    assert (tmp_path / "record.env").read_text() == value + "\n"
    recorded = (tmp_path / "record.scontrol").read_text().splitlines()
    assert recorded[:2] == ["update", "JobId=42"]
    assert answer_of(recorded[2].removeprefix("Comment=")) == answer
    assert "progress line" in (workdir / "submit-logs" / "42.log").read_text()


def test_submit_job_asks_for_one_cpu_in_the_profile_partition() -> None:
    settings = SlurmSettings(partition="low", account="orch", qos="normal", gpus_per_node=4)
    fields = submit_job_fields(settings, RemoteSettings(workdir="/w", env={"SLURM_CONF": "/etc/s.conf"}), "s-1")
    assert fields["name"] == "orch-submit.s-1" and fields["comment"] == "orch-submit=s-1"
    assert fields["partition"] == "low" and fields["account"] == "orch" and fields["qos"] == "normal"
    assert fields["cpus_per_task"] == 1 and "gres" not in json.dumps(fields)
    assert fields["environment"]["SLURM_CONF"] == "/etc/s.conf"


def test_answer_of_reads_only_our_comment() -> None:
    assert answer_of("orch-submit=s-1") is None
    assert answer_of('ORCH-RESULT {"ok": true}') == {"ok": True}
    truncated = answer_of('ORCH-RESULT {"ok": false, "error": {"key": "slurm.part')
    assert truncated is not None and truncated["ok"] is False and "submit job failed" in truncated["error"]["problem"]


# ---------------------------------------------------------------------------- tokens
def test_token_expiry_and_check() -> None:
    assert token_expiry("not-a-jwt") is None
    assert token_expiry(_jwt(2_000_000_000)) == 2_000_000_000
    client = SlurmRestClient("http://127.0.0.1:1", "root", _jwt(1000))
    with pytest.raises(SlurmRestError, match="expired") as caught:
        client.check_token(now=2000)
    assert caught.value.kind == "auth"
    SlurmRestClient("http://127.0.0.1:1", "root", _jwt(3000)).check_token(now=2000)


def _rest_profile(tmp_path: Path, name: str, **rest: Any) -> Path:
    data = yaml.safe_load(REST_PROFILE.read_text())
    data["name"] = name
    data["rest"] = {**data["rest"], **rest}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_expired_or_missing_token_is_one_line(tmp_path: Path) -> None:
    env = {
        "ORCH_SLURM_DIR": str(tmp_path),
        "ORCH_PYTHON": "python3",
        "ORCH_SLURMRESTD_URL": "http://127.0.0.1:1",
        "ORCH_SLURM_JWT_FILE": str(tmp_path / "token"),
    }
    (tmp_path / "token").write_text(f"SLURM_JWT={_jwt(time.time() - 60)}\n")
    expired = run_orch(["status", "--cluster", str(_rest_profile(tmp_path, "expired"))], cwd=REPO, env=env)
    assert_one_error_line(expired, "rest.token_file", "expired")
    missing = _rest_profile(tmp_path, "no-token", token_file=None, token_env="ORCH_TEST_NO_SUCH_TOKEN")
    assert_one_error_line(run_orch(["status", "--cluster", str(missing)], cwd=REPO, env=env), "rest.token_env", "is not set")


def test_profile_with_both_ssh_and_rest_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load(REST_PROFILE.read_text())
    data["login"] = {"host": "login.example.org"}
    (tmp_path / "clusters").mkdir()
    path = tmp_path / "clusters" / "both.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {
        "ORCH_SLURM_DIR": str(tmp_path),
        "ORCH_PYTHON": "python3",
        "ORCH_SLURMRESTD_URL": "http://127.0.0.1:1",
        "ORCH_SLURM_JWT_FILE": str(tmp_path / "token"),
    }
    assert_one_error_line(run_orch(["validate", str(path)], cwd=REPO, env=env), "not both")


# ---------------------------------------------------------------------------- the real slurmrestd
def rest_env(cluster: Any) -> dict[str, str]:
    rest = cluster.extra["rest"]
    return {**orch_env(cluster), "ORCH_SLURMRESTD_URL": rest["url"], "ORCH_SLURM_JWT_FILE": rest["token_file"]}


def rest_status(cluster: Any, sweep_id: str, profile: str | Path = "slurm-rest-local") -> dict[str, Any]:
    result = run_orch(["status", sweep_id, "--cluster", str(profile), "--json"], cwd=REPO, env=rest_env(cluster), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)[0]


# `orch submit` waits for its submit job's answer at most rest.submit_wait_s (60 s in slurm-rest-local), then says
# the submit job is queued and returns without the sweep's job: the test's path then depended on that job running
# within 60 s. Here the product's own wait is generous (a bound on the wait, not a verdict).
SUBMIT_WAIT_S = 300


@pytest.mark.integration
def test_submit_status_cancel_through_slurmrestd(slurm_cluster: Any, tmp_path: Path) -> None:
    profile = _rest_profile(tmp_path, "slurm-rest-local", submit_wait_s=SUBMIT_WAIT_S)  # slurm-rest-local, waiting longer
    result = run_orch(
        ["submit", str(LONG), "--cluster", str(profile)], cwd=REPO, env=rest_env(slurm_cluster), timeout=SUBMIT_WAIT_S + 180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "submitted sweep " in result.stdout, result.stdout  # the submit job answered (not "... is queued")
    sweep_id = result.stdout.split("submitted sweep ", 1)[1].split()[0]
    # The sweep's job was submitted on the cluster by the submit job, with our ids in its comment.
    squeue = slurm_cluster.run(["squeue", "--noheader", "--format=%j|%k"]).stdout
    assert f"orch.{sweep_id}|orch-sweep={sweep_id}" in squeue, squeue
    deadline = time.monotonic() + 240
    while True:
        state = rest_status(slurm_cluster, sweep_id, profile)
        if any(t["state"] == "RUNNING" and t["epoch"] >= 1 for t in state["trials"]):
            break
        assert time.monotonic() < deadline, f"no trial reported an epoch through MLflow: {state}"
        time.sleep(3)
    assert [job["state"] for job in state["jobs"]] == ["RUNNING"] and state["parent_run_id"]
    cancelled = run_orch(["cancel", sweep_id, "--cluster", str(profile)], cwd=REPO, env=rest_env(slurm_cluster))
    assert cancelled.returncode == 0 and "closed as KILLED" in cancelled.stdout, cancelled.stdout + cancelled.stderr
    deadline = time.monotonic() + 60
    while (state := rest_status(slurm_cluster, sweep_id, profile))["jobs"][0]["state"] != "CANCELLED":
        assert time.monotonic() < deadline, state
        time.sleep(2)
    parent, children = mlflow_runs(slurm_cluster, sweep_id)
    assert parent.info.status == "KILLED" and children and all(c.info.status == "KILLED" for c in children)
    logs = run_orch(["logs", sweep_id, "--cluster", str(profile)], cwd=REPO, env=rest_env(slurm_cluster))
    assert_one_error_line(logs, "slurmrestd cannot read log files")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("case", "slurm", "key", "words"),
    [
        ("bad-partition", {"partition": "nope"}, "slurm.partition", "Invalid partition"),
        ("too-many-gpus", {"gpus_per_node": 8}, "slurm.gpus_per_node", "refuses this job"),
    ],
)
def test_refused_submit_through_slurmrestd_queues_nothing(
    slurm_cluster: Any, tmp_path: Path, case: str, slurm: dict, key: str, words: str
) -> None:
    data = yaml.safe_load(REST_PROFILE.read_text())
    data["name"] = f"rest-{case}"
    data["slurm"] = {**data["slurm"], **slurm}
    profile = tmp_path / f"rest-{case}.yaml"
    profile.write_text(yaml.safe_dump(data))
    sweeps = Path(slurm_cluster.dir) / "remote" / "sweeps"
    before = set(sweeps.glob("*")) if sweeps.exists() else set()
    queued_before = slurm_cluster.run(["squeue", "--noheader", "--format=%i"]).stdout.split()
    result = run_orch(["submit", str(TINY), "--cluster", str(profile)], cwd=REPO, env=rest_env(slurm_cluster), timeout=180)
    line = assert_one_error_line(result, key)
    assert words.lower() in line.lower(), line
    assert (set(sweeps.glob("*")) if sweeps.exists() else set()) == before, "a refused submit left a sweep folder behind"
    # nothing new was queued (a job of an earlier test may have ended meanwhile)
    assert set(slurm_cluster.run(["squeue", "--noheader", "--format=%i"]).stdout.split()) <= set(queued_before)


@pytest.mark.integration
def test_token_signed_with_another_key_is_refused(slurm_cluster: Any, tmp_path: Path) -> None:
    token = tmp_path / "forged"
    token.write_text(_jwt(time.time() + 3600))  # well-formed, not signed with the cluster's key
    profile = _rest_profile(tmp_path, "forged", token_file=str(token))
    result = run_orch(["status", "--cluster", str(profile)], cwd=REPO, env=rest_env(slurm_cluster))
    assert_one_error_line(result, "rest.token_file", "refused")
    unreachable = _rest_profile(tmp_path, "unreachable", url="http://127.0.0.1:1")
    assert_one_error_line(
        run_orch(["status", "--cluster", str(unreachable)], cwd=REPO, env=rest_env(slurm_cluster)), "rest.url", "cannot reach"
    )
