"""A team MLflow tracking server started by `orch tracking up`, stopped by `down`.

The server runs in its own process group (MLflow spawns workers that outlive their
parent), lean (`--workers 1`, no job execution), on 127.0.0.1 unless told otherwise.
Its PID, URI and stores are recorded in `.orch/tracking/server.json`; `down` stops
the whole group by that PID. Secrets (S3 keys, the auth admin password) reach the
server through its environment only, never through a file or its command line.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.kernel.errors import OrchError
from orchestrator.kernel.files import write_atomic
from orchestrator.laptop.state import LocalState

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


class ServerError(OrchError):
    """The tracking server could not be started, reached or stopped."""


def tracking_dir(state: LocalState) -> Path:
    """`.orch/tracking/`: server record, server log, metric spool (this module owns the layout)."""
    return state.root / "tracking"


@dataclass(frozen=True)
class ServerSpec:
    """What to start: where runs and artifacts are stored, where to listen."""

    backend_store_uri: str
    artifacts: str  # a local directory, or s3://bucket/prefix
    host: str = "127.0.0.1"
    port: int = 5000
    serve_artifacts: bool = True  # proxy artifacts (mlflow-artifacts:/); False: clients write to `artifacts` directly
    auth: bool = False

    def command(self) -> list[str]:
        artifacts = self.artifacts if "://" in self.artifacts else str(Path(self.artifacts).resolve())
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--backend-store-uri",
            self.backend_store_uri,
            "--workers",
            "1",
        ]
        if self.serve_artifacts:
            cmd += ["--serve-artifacts", "--artifacts-destination", artifacts]
        else:
            cmd += ["--no-serve-artifacts", "--default-artifact-root", artifacts]
        if self.auth:
            cmd += ["--app-name", "basic-auth"]
        return cmd

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class ServerRecord:
    """The contents of `.orch/tracking/server.json`."""

    pid: int
    uri: str
    spec: dict
    log_file: str
    started_at: float = field(default_factory=time.time)

    @property
    def artifacts_destination(self) -> str | None:
        return self.spec.get("artifacts") if self.spec.get("serve_artifacts") else None


def _record_file(state: LocalState) -> Path:
    return tracking_dir(state) / "server.json"


def read_record(state: LocalState) -> ServerRecord | None:
    try:
        return ServerRecord(**json.loads(_record_file(state).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_record(state: LocalState, record: ServerRecord) -> None:
    path = _record_file(state)
    write_atomic(path, json.dumps(asdict(record), indent=1))


def is_healthy(uri: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as answer:  # noqa: S310 - loopback URI
            return answer.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def server_environment(spec: ServerSpec, workdir: Path) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONUNBUFFERED": "1"}
    if spec.auth:
        user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
        if not user or not password:
            raise ServerError(
                "--auth needs MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment "
                "(the admin account the server creates on first start)"
            )
        config = workdir / "basic_auth.ini"  # no secret in it: the password comes from the environment
        config.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = sqlite:///{(workdir / 'basic_auth.db').resolve()}\n"
            f"admin_username = {user}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        env.update(MLFLOW_AUTH_CONFIG_PATH=str(config), MLFLOW_AUTH_ADMIN_PASSWORD=password)
        env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(16))
    return env


def start_server(spec: ServerSpec, workdir: Path, timeout_s: float = START_TIMEOUT_S) -> ServerRecord:
    """Start `mlflow server` in a new process group and wait until /health answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    if "://" not in spec.artifacts:
        Path(spec.artifacts).mkdir(parents=True, exist_ok=True)
    if is_healthy(spec.uri, timeout_s=1.0):
        raise ServerError(f"something already answers at {spec.uri}; pick another --port")
    log_file = workdir / "server.log"
    with open(log_file, "ab") as log:
        process = subprocess.Popen(  # noqa: S603 - argument list
            spec.command(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_environment(spec, workdir),
            cwd=workdir,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-3:]
            raise ServerError(f"mlflow server exited with code {process.returncode}: {' | '.join(tail)[-400:]}")
        if is_healthy(spec.uri):
            return ServerRecord(process.pid, spec.uri, asdict(spec), str(log_file))
        time.sleep(0.5)
    stop_group(process.pid)
    raise ServerError(f"mlflow server did not answer at {spec.uri} within {timeout_s:.0f} s; see {log_file}")


def stop_group(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM the process group led by `pid`, SIGKILL it if it lingers. True if it was running."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        _alive(pid)  # reaps our own child so the group can empty
        time.sleep(0.2)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _alive(pid)
    return True


def up(state: LocalState, spec: ServerSpec) -> tuple[ServerRecord, bool]:
    """Start the server unless the recorded one is alive and healthy (idempotent). Returns (record, started)."""
    record = read_record(state)
    if record is not None and _alive(record.pid) and is_healthy(record.uri):
        return record, False
    if record is not None and _alive(record.pid):
        stop_group(record.pid)  # recorded but not answering: replace it
    state.ensure()
    record = start_server(spec, tracking_dir(state))
    _write_record(state, record)
    return record, True


def down(state: LocalState) -> ServerRecord | None:
    record = read_record(state)
    if record is None:
        return None
    stop_group(record.pid)
    _record_file(state).unlink(missing_ok=True)
    return record


def status(state: LocalState) -> tuple[ServerRecord | None, bool]:
    record = read_record(state)
    return record, bool(record and _alive(record.pid) and is_healthy(record.uri))


def recorded_artifacts_destination(state: LocalState, tracking_uri: str) -> str | None:
    """The S3 destination behind the recorded server's artifact proxy, if `tracking_uri` is that server."""
    override = os.environ.get("ORCH_ARTIFACTS_DESTINATION")
    if override:
        return override
    record = read_record(state)
    if record is None or record.uri.rstrip("/") != tracking_uri.rstrip("/"):
        return None
    destination = record.artifacts_destination
    return destination if destination and destination.startswith("s3://") else None
