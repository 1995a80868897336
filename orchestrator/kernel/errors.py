"""The orchestrator's errors, one tree. Each is raised where the problem is detected and reported
once, as one line, at the command line's edge (orchestrator/laptop/cli.py).

    OrchError                    anything the user can act on (exit code 1)
    ├── Problem                  the shape of every actionable error: where, key, problem, fix
    │   ├── ConfigError          a config file or value is wrong (exit code 2)
    │   │   └── ResourceError    it asks for more than the cluster can give
    │   ├── RemoteError          the login node refused or failed: raised there, carried over the
    │   │                        wire (orchestrator/login/wire.py), raised again on the laptop
    │   ├── QueueError           what was asked of the queue is not possible (login/queue/store.py)
    │   ├── TransportError       the login node cannot be reached over ssh (cluster/adaptors/ssh.py)
    │   ├── SlurmRestError       slurmrestd refused or cannot be reached (cluster/adaptors/slurmrest.py)
    │   ├── SnapshotError        the code cannot be shipped as a snapshot (cluster/adaptors/git.py)
    │   └── ImageToolError       a container tool is missing or failed (cluster/adaptors/containers.py)
    ├── SlurmError               a SLURM command failed: command, return code, message (cluster/adaptors/slurm.py)
    ├── TrackingError            MLflow refused or cannot be reached (orchestrator/tracking/client.py)
    │   └── DeliveryError        a batch was not acknowledged: may it have been sent? can a resend help?
    ├── UsageError               a command-line value is wrong (exit code 2)
    └── SweepFailedError         the sweep ran to its end but some trials failed

A `Problem` prints as `WHERE: KEY: PROBLEM; fix: FIX` (where and key when known).
"""

from __future__ import annotations

from pathlib import Path


class OrchError(Exception):
    """Base class: an error with a one-line message for the user."""

    exit_code = 1

    def one_line(self) -> str:
        return " ".join(str(self).split())


class Problem(OrchError):
    """An error that says what is wrong (`problem`), which setting or value (`key`), where (a file,
    a host; optional) and what to do about it (`fix`)."""

    def __init__(self, key: str, problem: str, fix: str, *, where: Path | str | None = None, exit_code: int = 2) -> None:
        self.key, self.problem, self.fix, self.where = key, problem, fix, where
        self.exit_code = exit_code
        super().__init__(self._text())

    def _text(self) -> str:
        where = f"{self.where}: " if self.where else ""
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.problem}; fix: {self.fix}"

    def __str__(self) -> str:
        return self._text()

    def as_dict(self) -> dict[str, str]:
        """What crosses the wire: key, problem and fix (the receiver knows where it asked)."""
        return {"key": self.key, "problem": self.problem, "fix": self.fix}


class ConfigError(Problem):
    """A configuration file (or a value in it) the orchestrator cannot use."""

    def __init__(self, file: Path | str, key: str, problem: str, fix: str) -> None:
        super().__init__(key, problem, fix, where=file, exit_code=2)

    @property
    def file(self) -> Path | str:
        return self.where or ""


class ResourceError(ConfigError):
    """Resources asked for that the chosen cluster cannot provide."""


class RemoteError(Problem):
    """The login node refused a command (bad sweep, refused job) or failed; `exit_code` is its answer's code."""


class TrackingUnavailable(RemoteError):
    """The tracking server did not answer the login node (down, restarting): a later try may succeed, so the
    queue's agent keeps the sweep queued instead of failing it."""


class QueueError(Problem):
    """Something the user asked of the queue is not possible; `key` names what to change."""


class UsageError(OrchError):
    """A command-line argument the orchestrator cannot use."""

    exit_code = 2


class SweepFailedError(OrchError):
    """The sweep ran to its end but one or more trials failed."""


class SweepInterruptedError(OrchError):
    """A local sweep stopped before its trials ended (Ctrl-C): its message says how to resume it."""

    exit_code = 130


__all__ = [
    "ConfigError",
    "OrchError",
    "Problem",
    "QueueError",
    "RemoteError",
    "ResourceError",
    "SweepFailedError",
    "SweepInterruptedError",
    "TrackingUnavailable",
    "UsageError",
]
