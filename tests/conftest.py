"""Shared fixtures: a throw-away conf/ tree and a way to run the `orch` CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.harness.slurm import slurm_cluster  # noqa: E402,F401  (the session's one SLURM test cluster)

REPO = Path(__file__).resolve().parent.parent


@dataclass
class ConfTree:
    root: Path

    def write(self, kind: str, name: str, content: dict | str) -> Path:
        path = self.root / kind / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
        return path


@pytest.fixture
def conf_tree(tmp_path: Path) -> ConfTree:
    """tmp/conf with the repository's projects and cluster profiles, and no sweeps."""
    root = tmp_path / "conf"
    shutil.copytree(REPO / "conf" / "projects", root / "projects")
    shutil.copytree(REPO / "conf" / "clusters", root / "clusters")
    (root / "sweeps").mkdir()
    return ConfTree(root)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_orch(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> CliResult:
    """Run the real `orch` entry point in a subprocess, as a user would."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.laptop.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def assert_one_error_line(result: CliResult, *words: str, code: int = 2) -> str:
    """A refused command: exit `code`, one `error: ... fix: ...` line naming `words`, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "fix:" in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that uses the session's SLURM cluster, directly or through another fixture, is marked `slurm`:
    `make test-fast` leaves them out (-m 'not slurm'), `make test` runs them (docs/testing.md)."""
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slurm)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run that collected nothing, or passed nothing (all skipped), is a failure."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter is not None else 0
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED or (exitstatus == pytest.ExitCode.OK and passed == 0):
        if reporter is not None:
            reporter.write_line("error: no test passed (none collected, or all skipped): failing the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
