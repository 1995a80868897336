"""The exact code a sweep runs: git commit, dirty flag and uncommitted diff."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

UNKNOWN = "unknown"


@dataclass(frozen=True)
class CodeVersion:
    commit: str
    dirty: bool
    diff: str
    untracked: tuple[str, ...]

    @property
    def short(self) -> str:
        return self.commit[:12] + ("+dirty" if self.dirty else "")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def code_version(directory: Path) -> CodeVersion:
    """Describe the git checkout that holds `directory` (commit 'unknown' outside git)."""
    commit = (_git(["rev-parse", "HEAD"], directory) or "").strip()
    if not commit:
        return CodeVersion(UNKNOWN, dirty=False, diff="", untracked=())
    diff = _git(["diff", "HEAD", "--binary"], directory) or ""
    untracked_out = _git(["ls-files", "--others", "--exclude-standard"], directory) or ""
    untracked = tuple(line for line in untracked_out.splitlines() if line)
    return CodeVersion(commit, dirty=bool(diff.strip() or untracked), diff=diff, untracked=untracked)
