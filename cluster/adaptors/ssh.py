"""How commands reach the login node: over ssh from a laptop, or directly on the login node.

The only module that runs `ssh`. Commands are argument lists; on the ssh side every
argument is quoted with `shlex.quote`, so a value with shell metacharacters stays a
single inert argument on the remote shell.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from orchestrator.kernel.errors import Problem

if TYPE_CHECKING:
    from orchestrator.kernel.config.models import SshLogin


class TransportError(Problem):
    """The login node could not be reached or refused us: which host, what happened, what to do."""

    def __init__(self, host: str, problem: str, fix: str) -> None:
        super().__init__("", problem, fix, where=host)
        self.host = host


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class Transport(Protocol):
    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: bytes | None = None, timeout_s: float = 120
    ) -> CommandResult: ...

    def stream(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> int: ...

    @property
    def description(self) -> str: ...


def remote_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """One shell command line for the remote side: `env K=V ... argv`, everything quoted."""
    prefix = ["env", *(f"{key}={value}" for key, value in (env or {}).items())] if env else []
    return " ".join(shlex.quote(part) for part in [*prefix, *argv])


@dataclass(frozen=True)
class LocalTransport:
    """We are on the login node: run the commands here."""

    @property
    def description(self) -> str:
        return "this machine"

    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: bytes | None = None, timeout_s: float = 120
    ) -> CommandResult:
        try:
            done = subprocess.run(
                list(argv), input=stdin, capture_output=True, timeout=timeout_s, env={**os.environ, **(env or {})}, check=False
            )
        except FileNotFoundError:
            raise TransportError("this machine", f"'{argv[0]}' not found", "check the profile's remote.python and PATH") from None
        except subprocess.TimeoutExpired:
            raise TransportError("this machine", f"'{argv[0]}' did not answer in {timeout_s:g} s", "try again") from None
        return CommandResult(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))

    def stream(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> int:
        return subprocess.call(list(argv), env={**os.environ, **(env or {})})


@dataclass(frozen=True)
class SshTransport:
    """The `ssh` binary with BatchMode (never prompts) and a shared ControlMaster connection."""

    host: str
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    ssh_config: str | None = None
    jump_host: str | None = None
    control_persist_s: int = 600
    connect_timeout_s: int = 10
    options: Mapping[str, str] = field(default_factory=dict)
    control_dir: Path = Path.home() / ".orch" / "ssh"

    @property
    def description(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}" + (f":{self.port}" if self.port else "")

    def base_argv(self) -> list[str]:
        argv = ["ssh"]
        if self.ssh_config:
            argv += ["-F", os.path.expanduser(self.ssh_config)]
        if self.port:
            argv += ["-p", str(self.port)]
        argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout_s}"]
        if self.identity_file:
            argv += ["-i", os.path.expanduser(self.identity_file), "-o", "IdentitiesOnly=yes"]
        if self.jump_host:
            argv += ["-J", self.jump_host]
        if self.control_persist_s > 0:
            self.control_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            argv += [
                "-o",
                "ControlMaster=auto",
                "-o",
                f"ControlPath={self.control_dir}/%C",
                "-o",
                f"ControlPersist={self.control_persist_s}",
            ]
        for key, value in self.options.items():
            argv += ["-o", f"{key}={value}"]
        if self.user:
            argv += ["-l", self.user]
        return [*argv, self.host]

    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: bytes | None = None, timeout_s: float = 120
    ) -> CommandResult:
        full = [*self.base_argv(), "--", remote_command(argv, env)]
        try:
            done = subprocess.run(
                full, input=stdin if stdin is not None else b"", capture_output=True, timeout=timeout_s, check=False
            )
        except FileNotFoundError:
            raise TransportError(self.description, "the ssh client is not installed", "install openssh-client") from None
        except subprocess.TimeoutExpired:
            raise TransportError(self.description, f"no answer in {timeout_s:g} s", "check the host and your network") from None
        result = CommandResult(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))
        if result.returncode == 255:
            raise self._connection_error(result.stderr)
        return result

    def stream(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> int:
        return subprocess.call([*self.base_argv(), "--", remote_command(argv, env)])

    def _connection_error(self, stderr: str) -> TransportError:
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else "ssh failed"
        lowered = stderr.lower()
        if "permission denied" in lowered:
            return TransportError(
                self.description,
                f"the login node refused our key ({last})",
                "check login.identity_file and that its public key is in ~/.ssh/authorized_keys there",
            )
        if "host key verification failed" in lowered:
            return TransportError(self.description, "host key verification failed", "accept the host key once with a plain ssh")
        return TransportError(
            self.description,
            f"cannot reach the login node ({last})",
            "check login.host/port, your network or VPN, and login.jump_host",
        )


def transport_for(login: SshLogin | None) -> Transport:
    """The transport of a cluster profile's `login:` section (None: we are on the login node)."""
    if login is None:
        return LocalTransport()
    return SshTransport(
        host=login.host,
        user=login.user,
        port=login.port,
        identity_file=login.identity_file,
        ssh_config=login.ssh_config,
        jump_host=login.jump_host,
        control_persist_s=login.control_persist_s,
        connect_timeout_s=login.connect_timeout_s,
        options=dict(login.options),
    )
