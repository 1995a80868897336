"""A small client of slurmrestd's REST API (JWT authentication), for sites without ssh to a login node.

The only module that speaks HTTP to SLURM. Standard library only (urllib), so the laptop side
needs nothing more. Errors are raised as `SlurmRestError(problem, fix)`; the caller adds the
profile file and key.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator.kernel.errors import Problem
from orchestrator.kernel.states import JobState

# The REST API answers 500 with this when slurmctld rejected the credentials slurmrestd passed on.
_REJECTED_MARKERS = ("unable to load", "Unspecified error", "Failed while looking")


class SlurmRestError(Problem):
    """`kind`: connection (cannot reach slurmrestd), auth (user or token refused), protocol (not slurmrestd,
    or not this API version), refused (SLURM refused the request itself: partition, job id, ...)."""

    def __init__(self, problem: str, fix: str, kind: str = "refused") -> None:
        super().__init__("", problem, fix)
        self.kind = kind


@dataclass(frozen=True)
class RestJob:
    """What the REST API says of one job (the fields we use)."""

    job_id: str
    name: str
    state: JobState
    comment: str
    nodes: str
    partition: str
    reason: str
    array_job_id: str | None
    array_task_id: str | None
    restarts: int

    @property
    def display_id(self) -> str:
        """`123_4` for an array task (as sacct writes it), else `123`."""
        if self.array_job_id and self.array_task_id is not None:
            return f"{self.array_job_id}_{self.array_task_id}"
        return self.job_id

    @classmethod
    def of(cls, record: dict[str, Any]) -> RestJob:
        array_job = record.get("array_job_id") or 0
        task = record.get("array_task_id")
        return cls(
            job_id=str(record["job_id"]),
            name=str(record.get("name") or ""),
            state=JobState.parse(str(record.get("job_state") or "")),
            comment=str(record.get("comment") or ""),
            nodes=str(record.get("nodes") or ""),
            partition=str(record.get("partition") or ""),
            reason=str(record.get("state_reason") or ""),
            array_job_id=str(array_job) if array_job else None,
            array_task_id=None if task is None else str(task),
            restarts=int(record.get("restart_cnt") or 0),
        )


def token_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT (seconds since the epoch), or None when it has none or is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, json.JSONDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, (int, float)) else None


@dataclass(frozen=True)
class SlurmRestClient:
    url: str
    user: str
    token: str
    api_version: str = "v0.0.38"
    timeout_s: float = 30.0

    @property
    def description(self) -> str:
        return f"slurmrestd at {self.url}"

    def check_token(self, now: float | None = None) -> None:
        exp = token_expiry(self.token)
        if exp is None:
            raise SlurmRestError(
                "the SLURM token is not a JWT", "get one with `scontrol token lifespan=SECONDS` on the cluster", "auth"
            )
        if exp <= (now if now is not None else time.time()):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(exp))
            raise SlurmRestError(
                f"the SLURM token expired at {when}", "get a new one with `scontrol token lifespan=SECONDS`", "auth"
            )

    # -- calls ---------------------------------------------------------------------
    def ping(self) -> str:
        answer = self._call("GET", "ping")
        pings = answer.get("pings") or []
        return str(pings[0].get("ping", "?")) if pings else "?"

    def submit(self, script: str, job: dict[str, Any]) -> str:
        answer = self._call("POST", "job/submit", {"script": script, "job": job})
        return str(answer["job_id"])

    def jobs(self) -> list[RestJob]:
        """Every job slurmctld still knows (running, pending and recently ended): ONE request."""
        return [RestJob.of(record) for record in self._call("GET", "jobs").get("jobs", [])]

    def job(self, job_id: str) -> RestJob | None:
        try:
            records = self._call("GET", f"job/{int(job_id)}").get("jobs", [])
        except SlurmRestError as exc:
            if "Invalid job id" in exc.problem:
                return None
            raise
        return RestJob.of(records[0]) if records else None

    def cancel(self, job_ids: Iterable[str]) -> list[str]:
        """Cancel each job; returns those SLURM no longer knew (already gone)."""
        gone = []
        for job_id in job_ids:
            try:
                self._call("DELETE", f"job/{int(job_id.partition('_')[0])}")
            except SlurmRestError as exc:
                if "Invalid job id" not in exc.problem and "already completed" not in exc.problem:
                    raise
                gone.append(job_id)
        return gone

    # -- transport -----------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url.rstrip('/')}/slurm/{self.api_version}/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "X-SLURM-USER-NAME": self.user,
                "X-SLURM-USER-TOKEN": self.token,
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            if exc.code in (401, 403):
                raise SlurmRestError(
                    f"{self.description} refused the user or token (HTTP {exc.code})",
                    "check rest.user and that the token is the one `scontrol token` gave that user",
                    "auth",
                ) from None
            if exc.code == 404 and not payload.strip().startswith(b"{"):
                raise SlurmRestError(
                    f"{self.description} has no API {self.api_version}",
                    "set rest.api_version to one the site's slurmrestd serves",
                    "protocol",
                ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SlurmRestError(
                f"cannot reach {self.description} ({reason})", "check rest.url, your network or VPN", "connection"
            ) from None
        try:
            answer = json.loads(payload)
        except json.JSONDecodeError:
            raise SlurmRestError(
                f"{self.description} answered something that is not JSON ({payload[:80]!r})",
                "check rest.url points at slurmrestd",
                "protocol",
            ) from None
        errors = answer.get("errors") or []
        if errors:
            raise self._error(errors[0])
        return answer

    def _error(self, error: dict[str, Any]) -> SlurmRestError:
        text = str(error.get("description") or error.get("error") or error)
        if any(marker in text for marker in _REJECTED_MARKERS) and error.get("error_number", -1) == -1:
            return SlurmRestError(
                f"{self.description}: slurmctld refused our request ({text})",
                "check the token (rest.token_file / SLURM_JWT) is valid for rest.user",
                "auth",
            )
        detail = error.get("error")
        return SlurmRestError(
            f"{text}" + (f" ({detail})" if detail and detail != text else ""),
            "ask for what the cluster has (sinfo; scontrol show partition)",
        )
