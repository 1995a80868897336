"""Errors the orchestrator raises where it detects a problem; the CLI reports them once.

    OrchError                 anything the user can act on (exit code 1)
    ├── ConfigError           a config file is wrong: file, key, problem, fix (exit code 2)
    │   └── ResourceError     the config asks for more than the cluster can give
    ├── UsageError            a command-line value is wrong (exit code 2)
    └── SweepFailedError      a sweep ran but some of its trials failed
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class OrchError(Exception):
    """Base class: an error with a one-line message for the user."""

    exit_code = 1

    def one_line(self) -> str:
        return " ".join(str(self).split())


@dataclass
class ConfigError(OrchError):
    """A configuration file (or a value in it) the orchestrator cannot use."""

    file: Path | str
    key: str
    problem: str
    fix: str

    exit_code = 2

    def __post_init__(self) -> None:
        super().__init__(self.__str__())

    def __str__(self) -> str:
        key = f"{self.key}: " if self.key else ""
        return f"{self.file}: {key}{self.problem}; fix: {self.fix}"


class ResourceError(ConfigError):
    """Resources asked for that the chosen cluster cannot provide."""


class UsageError(OrchError):
    """A command-line argument the orchestrator cannot use."""

    exit_code = 2


class SweepFailedError(OrchError):
    """The sweep ran to its end but one or more trials failed."""
