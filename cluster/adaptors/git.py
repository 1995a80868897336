"""The one adaptor that runs `git`: the exact code a sweep runs (commit, dirty flag, uncommitted
diff) and the snapshot a submit ships (the files of the working tree, packed, with that provenance).

A snapshot holds every tracked file as it is in the working tree (so committed code
plus uncommitted changes), and untracked files when the profile says `include`. The
commit and the uncommitted diff are recorded beside it so every run can be traced.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from orchestrator.kernel.errors import Problem

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


class SnapshotError(Problem):
    """The working tree cannot be shipped as it is (not a git checkout, untracked files refused)."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__("", problem, fix)


@dataclass(frozen=True)
class Snapshot:
    repo_root: Path
    version: CodeVersion
    files: tuple[str, ...]
    archive: bytes  # tar.gz of `files`, paths relative to the repository root

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.archive).hexdigest()

    def describe(self) -> dict[str, object]:
        return {
            "commit": self.version.commit,
            "dirty": self.version.dirty,
            "files": len(self.files),
            "archive_sha256": self.sha256,
            "untracked": list(self.version.untracked),
        }


def repo_root_of(path: Path) -> Path:
    top = _git(["rev-parse", "--show-toplevel"], path)
    if top is None:
        raise SnapshotError(
            f"{path} is not inside a git repository", "submit from a git checkout of your project (git init; git commit)"
        )
    return Path(top.strip())


def take_snapshot(path: Path, untracked_policy: str = "warn") -> tuple[Snapshot, list[str]]:
    """Pack the repository holding `path`; returns the snapshot and warnings for the user."""
    root = repo_root_of(path)
    version = code_version(root)
    warnings: list[str] = []
    if version.untracked:
        listed = ", ".join(version.untracked[:5]) + (" ..." if len(version.untracked) > 5 else "")
        if untracked_policy == "refuse":
            raise SnapshotError(
                f"untracked files would not be shipped: {listed}",
                "git add them, add them to .gitignore, or set remote.untracked_files: include",
            )
        if untracked_policy == "warn":
            warnings.append(f"untracked files are not shipped: {listed}")
    tracked = _git_lines(root, ["ls-files", "-z", "--cached"])
    files = [f for f in tracked if (root / f).is_file()]
    if untracked_policy == "include":
        files += list(version.untracked)
    return Snapshot(root, version, tuple(sorted(set(files))), _pack(root, sorted(set(files)))), warnings


def _git_lines(root: Path, args: list[str]) -> list[str]:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, check=True)
    return [item for item in done.stdout.decode().split("\0") if item]


def _pack(root: Path, files: list[str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in files:
            info = archive.gettarinfo(str(root / name), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0  # identical code packs to identical bytes
            with open(root / name, "rb") as handle:
                archive.addfile(info, handle)
    return gzip.compress(buffer.getvalue(), compresslevel=6, mtime=0)
