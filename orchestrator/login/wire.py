"""The wire between the laptop and the login node: the one owner of the result envelope.

The laptop runs `python -m orchestrator.login COMMAND ...` on the login node (over ssh, directly, or
inside the REST transport's submit job). The command may print anything; its LAST line starting
with the prefix is its answer:

    ORCH-RESULT {"ok": true, ...}                                                  the answer
    ORCH-RESULT {"ok": false, "code": 2, "error": {"key": ..., "problem": ..., "fix": ...}}

`emit`/`emit_error` write it on the login node; `read_answer` finds and decodes it on the laptop,
raising the error side as a `RemoteError` (where: the profile file that named the cluster).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.kernel.errors import Problem, RemoteError

RESULT_PREFIX = "ORCH-RESULT "


def encode(answer: Mapping[str, Any]) -> str:
    """One answer line: `ORCH-RESULT {"ok": true, ...}`."""
    return RESULT_PREFIX + json.dumps({"ok": True, **answer})


def encode_error(error: Problem) -> str:
    """One error line: `ORCH-RESULT {"ok": false, "code": N, "error": {...}}`."""
    return RESULT_PREFIX + json.dumps({"ok": False, "code": error.exit_code, "error": error.as_dict()})


def emit(answer: Mapping[str, Any]) -> None:
    sys.stdout.write(encode(answer) + "\n")
    sys.stdout.flush()


def emit_error(error: Problem) -> int:
    """Write the error as the answer; returns the exit code the command should end with."""
    sys.stdout.write(encode_error(error) + "\n")
    sys.stdout.flush()
    return error.exit_code


def find_answer(output: str) -> str | None:
    """The JSON of the last answer line in a command's output (None: the command printed none)."""
    return next((line[len(RESULT_PREFIX) :] for line in reversed(output.splitlines()) if line.startswith(RESULT_PREFIX)), None)


def printed_lines(output: str) -> list[str]:
    """What a command printed besides its answer (logs, `orch logs` file contents)."""
    return [line for line in output.splitlines() if not line.startswith(RESULT_PREFIX)]


def decode(payload: str, where: Path | str | None) -> dict[str, Any]:
    """The answer as a dict; the error side raised as `RemoteError` located at `where`."""
    try:
        answer = json.loads(payload)
    except json.JSONDecodeError:
        raise RemoteError(
            "remote",
            f"the login node answered something that is not JSON ({payload[:120]!r})",
            "check that the login node runs the same version of orch",
            where=where,
            exit_code=1,
        ) from None
    return checked(answer, where)


def checked(answer: Any, where: Path | str | None) -> dict[str, Any]:
    """A decoded answer as a dict; the error side raised as `RemoteError` located at `where`."""
    if not isinstance(answer, dict):
        raise RemoteError(
            "remote",
            "the login node's answer is not an object",
            "check that the login node runs the same version of orch",
            where=where,
            exit_code=1,
        )
    if not answer.get("ok"):
        error = answer.get("error") or {}
        raise RemoteError(
            str(error.get("key", "remote")),
            str(error.get("problem", "the login node failed")),
            str(error.get("fix", "see the login node's log")),
            where=where,
            exit_code=int(answer.get("code", 2)),
        )
    return answer
