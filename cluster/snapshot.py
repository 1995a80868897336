"""The exact code of a submit: the files of the git working tree, packed, with their provenance.

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

from orchestrator.codeinfo import CodeVersion, code_version


class SnapshotError(Exception):
    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; fix: {fix}")
        self.problem, self.fix = problem, fix


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
    done = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SnapshotError(f"{path} is not inside a git repository", "submit from a git checkout of your project (git init; git commit)")
    return Path(done.stdout.strip())


def take_snapshot(path: Path, untracked_policy: str = "warn") -> tuple[Snapshot, list[str]]:
    """Pack the repository holding `path`; returns the snapshot and warnings for the user."""
    root = repo_root_of(path)
    version = code_version(root)
    warnings: list[str] = []
    if version.untracked:
        listed = ", ".join(version.untracked[:5]) + (" ..." if len(version.untracked) > 5 else "")
        if untracked_policy == "refuse":
            raise SnapshotError(f"untracked files would not be shipped: {listed}",
                                "git add them, add them to .gitignore, or set remote.untracked_files: include")
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
