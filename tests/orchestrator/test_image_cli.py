"""`orch image build|sif|sqsh` with stand-in tools on PATH that record their argument lists: the exact commands
run, and one line naming a missing tool and how to get it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.conftest import REPO, CliResult, assert_one_error_line, run_orch

# A stand-in tool: records `NAME ARG...` (one argument a line, a blank line after), then exits $FAIL_<NAME> or 0.
# `docker version` answers as a daemon would unless $DOCKER_DAEMON is "down".
FAKE = """#!/bin/sh
name=${{0##*/}}
{{ printf '%s\\n' "$name" "$@"; echo; }} >> "$RECORD"
if [ "$name" = docker ] && [ "$1" = version ] && [ "$DOCKER_DAEMON" = down ]; then exit 1; fi
exit {code}
"""


def _tools(tmp_path: Path, *names: str, failing: str = "") -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        tool = bin_dir / name
        tool.write_text(FAKE.format(code=3 if name == failing else 0))
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def _orch(tmp_path: Path, args: list[str], bin_dir: Path, **env: str) -> CliResult:
    return run_orch(["image", *args], cwd=tmp_path, env={"PATH": str(bin_dir), "RECORD": str(tmp_path / "argv"), **env})


def _calls(tmp_path: Path) -> list[list[str]]:
    record = tmp_path / "argv"
    text = record.read_text() if record.exists() else ""
    return [block.split("\n") for block in text.split("\n\n") if block.strip()]


def test_build_with_podman_when_docker_has_no_daemon(tmp_path: Path) -> None:
    bin_dir = _tools(tmp_path, "docker", "podman")
    result = _orch(
        tmp_path,
        ["build", "--variant", "cuda", "--context", str(REPO), "--build-arg", "PIP_INDEX_URL=x", "--volume", "/w:/w:ro"],
        bin_dir,
        DOCKER_DAEMON="down",
    )
    assert result.returncode == 0, result.stderr
    assert _calls(tmp_path) == [
        ["docker", "version", "--format", "{{.Server.Version}}"],
        [
            "podman", "build", "--isolation=chroot", "--build-arg", "VARIANT=cuda", "--build-arg", "PIP_INDEX_URL=x",
            "--volume", "/w:/w:ro", "--tag", "orch:cuda", "--file", f"{REPO}/Dockerfile", str(REPO),
        ],
    ]  # fmt: skip


def test_build_with_docker_when_its_daemon_answers(tmp_path: Path) -> None:
    bin_dir = _tools(tmp_path, "docker", "podman")
    result = _orch(tmp_path, ["build", "--tag", "lab/orch:1", "--context", "."], bin_dir)
    assert result.returncode == 0, result.stderr
    assert _calls(tmp_path)[-1] == [
        "docker",
        "build",
        "--build-arg",
        "VARIANT=cpu",
        "--tag",
        "lab/orch:1",
        "--file",
        "Dockerfile",
        ".",
    ]


def test_sif_from_podman_goes_through_an_archive(tmp_path: Path) -> None:
    bin_dir = _tools(tmp_path, "podman", "apptainer")
    result = _orch(tmp_path, ["sif", "orch:cpu", "-o", "images/orch.sif"], bin_dir)
    assert result.returncode == 0, result.stderr
    save, build = _calls(tmp_path)
    archive = save[-2]
    assert save == ["podman", "save", "--format", "docker-archive", "--output", archive, "orch:cpu"]
    assert archive.startswith(f"{tmp_path}/images/orch-image-") and archive.endswith("/image.tar")
    assert build == ["apptainer", "build", f"{tmp_path}/images/orch.sif", f"docker-archive:{archive}"]
    assert not Path(archive).parent.exists()  # the archive goes away


def test_sif_from_docker_reads_its_daemon(tmp_path: Path) -> None:
    bin_dir = _tools(tmp_path, "docker", "singularity")
    result = _orch(tmp_path, ["sif", "orch:cuda", "--engine", "docker"], bin_dir)
    assert result.returncode == 0, result.stderr
    assert _calls(tmp_path) == [["singularity", "build", f"{tmp_path}/orch.sif", "docker-daemon:orch:cuda"]]


@pytest.mark.parametrize(("engine", "source"), [("docker", "dockerd://orch:cpu"), ("podman", "podman://orch:cpu")])
def test_sqsh_imports_from_the_engine(tmp_path: Path, engine: str, source: str) -> None:
    bin_dir = _tools(tmp_path, engine, "enroot")
    result = _orch(tmp_path, ["sqsh", "--engine", engine], bin_dir)
    assert result.returncode == 0, result.stderr
    assert _calls(tmp_path)[-1] == ["enroot", "import", "--output", f"{tmp_path}/orch.sqsh", source]


@pytest.mark.parametrize(
    ("args", "tools", "words"),
    [
        (["build"], (), ("no image engine here", "apt-get install podman")),
        (["build", "--engine", "docker"], ("podman",), ("docker: not found on PATH",)),
        (["sif"], ("podman",), ("apptainer: not found on PATH", "apptainer.org")),
        (["sqsh"], ("podman",), ("enroot: not found on PATH", "NVIDIA/enroot")),
        (["sif"], ("apptainer",), ("no image engine here",)),
        (["build", "--engine", "docker", "--volume", "/w:/w"], ("docker",), ("--volume", "docker build cannot bind")),
    ],
)
def test_a_missing_tool_is_one_line(tmp_path: Path, args: list[str], tools: tuple[str, ...], words: tuple[str, ...]) -> None:
    assert_one_error_line(_orch(tmp_path, args, _tools(tmp_path, *tools)), *words, code=1)
    assert all(call[0] not in ("apptainer", "enroot") or call[1] == "version" for call in _calls(tmp_path))


def test_a_failing_tool_is_one_line(tmp_path: Path) -> None:
    bin_dir = _tools(tmp_path, "podman", failing="podman")
    assert_one_error_line(_orch(tmp_path, ["build"], bin_dir), "podman build --isolation=chroot", "exit code 3", code=1)
