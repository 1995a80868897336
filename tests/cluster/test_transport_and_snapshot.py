"""Remote command quoting (what ssh hands to the login node's shell) and code snapshots."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from cluster.adaptors.git import SnapshotError, take_snapshot
from cluster.adaptors.ssh import SshTransport, remote_command

HOSTILE_ARGS = ["sweep'; touch {m}; echo '", "$(touch {m})", "`touch {m}`", "a b", "*", "x\ny", "--flag=$HOME", ""]


def test_remote_command_keeps_every_argument_inert(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    args = [a.format(m=marker) for a in HOSTILE_ARGS]
    env = {"ORCH_VALUE": "v; touch " + str(marker)}
    line = remote_command(
        [sys.executable, "-c", "import json,os,sys; print(json.dumps([sys.argv[1:], os.environ['ORCH_VALUE']]))", *args], env
    )
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, cwd=tmp_path, check=True)  # the remote shell
    received, value = json.loads(done.stdout)
    assert received == args and value == env["ORCH_VALUE"]
    assert not marker.exists()


def test_ssh_argv_uses_batch_mode_and_control_master(tmp_path: Path) -> None:
    transport = SshTransport(
        host="login.example.org",
        user="me",
        port=2222,
        identity_file="~/.ssh/k",
        jump_host="gw",
        control_dir=tmp_path / "ctl",
        options={"UserKnownHostsFile": "/x"},
    )
    argv = transport.base_argv()
    assert argv[0] == "ssh" and argv[-1] == "login.example.org"
    joined = " ".join(argv)
    for expected in (
        "-p 2222",
        "BatchMode=yes",
        "ControlMaster=auto",
        "ControlPersist=600",
        "-J gw",
        "-l me",
        "UserKnownHostsFile=/x",
    ):
        assert expected in joined


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "conf" / "sweeps").mkdir(parents=True)
    (root / "code.py").write_text("A = 1\n")
    (root / "conf" / "sweeps" / "s.yaml").write_text("name: s\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return root


def _members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_snapshot_ships_the_working_tree_and_records_the_diff(repo: Path) -> None:
    (repo / "code.py").write_text("A = 2\n")
    (repo / "notes.txt").write_text("untracked\n")
    snapshot, warnings = take_snapshot(repo / "conf" / "sweeps", "warn")
    files = _members(snapshot.archive)
    assert files["code.py"] == b"A = 2\n"  # the uncommitted change is what runs
    assert "notes.txt" not in files and any("notes.txt" in w for w in warnings)
    assert snapshot.version.dirty and "+A = 2" in snapshot.version.diff
    assert len(snapshot.version.commit) == 40
    again, _ = take_snapshot(repo, "warn")
    assert again.sha256 == snapshot.sha256  # same code, same bytes


def test_snapshot_untracked_policies(repo: Path) -> None:
    (repo / "notes.txt").write_text("untracked\n")
    with pytest.raises(SnapshotError, match="untracked files would not be shipped: notes.txt"):
        take_snapshot(repo, "refuse")
    snapshot, warnings = take_snapshot(repo, "include")
    assert "notes.txt" in _members(snapshot.archive) and not warnings


def test_snapshot_outside_git_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="not inside a git repository"):
        take_snapshot(tmp_path, "warn")


@pytest.mark.parametrize(
    ("text", "minutes"), [("02:00:00", 120), ("1-00:00:00", 1440), ("30", 30), ("5:30", 6), ("UNLIMITED", None), ("0:00:59", 1)]
)
def test_slurm_durations(text: str, minutes: int | None) -> None:
    from cluster.adaptors.slurm import parse_duration_min

    assert parse_duration_min(text) == minutes
