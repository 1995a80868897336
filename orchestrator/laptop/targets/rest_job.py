"""The submit job of the REST transport: one small CPU job that unpacks a sweep and submits it.

slurmrestd cannot copy files, so the code snapshot and the sweep's manifest travel inside the
job's own script (base64 here-documents; slurmctld keeps scripts up to a few MB). The job runs
on a compute node, unpacks them into the sweep folder on the shared filesystem and runs the
same `python -m orchestrator.login submit` the ssh transport runs on the login node. Its answer
(the JSON line) is written into the job's Comment, where the REST API can read it back.
"""

from __future__ import annotations

import base64
import json
import shlex
import textwrap
from typing import Any

from cluster.slurm.job_spec import SUBMIT_JOB_PREFIX, setup_lines, small_job
from orchestrator.kernel.config.models import RemoteSettings, SlurmSettings
from orchestrator.kernel.errors import RemoteError
from orchestrator.kernel.sweep_folder import SWEEPS_DIRNAME
from orchestrator.login import wire
from orchestrator.login.wire import RESULT_PREFIX

MAX_SCRIPT_BYTES = 3_500_000  # slurmctld's max_script_size defaults to 4 MB
MAX_COMMENT_CHARS = 1000  # longer Comments are refused by `scontrol update`
SUBMIT_JOB_TIME_MIN = 10


def submit_job_name(sweep_id: str) -> str:
    return f"{SUBMIT_JOB_PREFIX}{sweep_id}"


def _heredoc(archive: bytes, delimiter: str) -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(archive).decode(), 76))
    return f"{body}\n{delimiter}"  # base64 never contains the delimiter (it has '_')


def submit_script(remote: RemoteSettings, workdir: str, sweep_id: str, code_archive: bytes, bundle_archive: bytes) -> str:
    """The whole batch script; every value from the profile is shell-quoted."""
    bundle_root = f"{workdir}/{SWEEPS_DIRNAME}/{sweep_id}"
    q_root, q_logs = shlex.quote(bundle_root), shlex.quote(f"{workdir}/submit-logs")
    python = shlex.quote(remote.python)
    failure = wire.encode_error(
        RemoteError(
            "remote.python",
            "the submit job printed no answer (see its log under remote.workdir/submit-logs)",
            "check remote.python and remote.setup of the profile",
            exit_code=1,
        )
    )
    lines = [
        "#!/bin/bash",
        f"# orch: unpack sweep {sweep_id} and submit its jobs (sent through slurmrestd)",
        *setup_lines(remote, bundle_root),
        f"mkdir -p {q_logs} {q_root}/code || exit 3",
        f'exec >>{q_logs}/"$SLURM_JOB_ID".log 2>&1',
        f"base64 -d >{q_root}/.code.tgz <<'ORCH_CODE_END'",
        _heredoc(code_archive, "ORCH_CODE_END"),
        f"base64 -d >{q_root}/.bundle.tgz <<'ORCH_BUNDLE_END'",
        _heredoc(bundle_archive, "ORCH_BUNDLE_END"),
        f"tar -xzf {q_root}/.code.tgz -C {q_root}/code && tar -xzf {q_root}/.bundle.tgz -C {q_root} || exit 4",
        f"rm -f {q_root}/.code.tgz {q_root}/.bundle.tgz",
        f"{python} -m orchestrator.login submit {q_root} | tee {q_root}.submit.out",
        f"answer=$(grep '^{RESULT_PREFIX}' {q_root}.submit.out | tail -n 1)",
        f"rm -f {q_root}.submit.out",
        f'[ -n "$answer" ] || answer={shlex.quote(failure)}',
        f'scontrol update JobId="$SLURM_JOB_ID" Comment="${{answer:0:{MAX_COMMENT_CHARS}}}"',
        "",
    ]
    return "\n".join(lines)


def submit_job_fields(settings: SlurmSettings, remote: RemoteSettings, sweep_id: str) -> dict[str, Any]:
    """The `job` object of the REST submit request: a one-CPU job in the profile's partition. Its output goes
    nowhere: the script logs under remote.workdir once it has created it."""
    job = small_job(settings, submit_job_name(sweep_id), SUBMIT_JOB_TIME_MIN, comment=f"orch-submit={sweep_id}")
    return job.rest_fields({"PATH": "/usr/local/bin:/usr/bin:/bin", **remote.env})


def answer_of(comment: str) -> dict[str, Any] | None:
    """The submit's answer, once the submit job has written it into its Comment (cut at MAX_COMMENT_CHARS:
    an answer that no longer decodes is reported as the submit job's failure)."""
    payload = wire.find_answer(comment)
    if payload is None:
        return None
    try:
        return dict(json.loads(payload))
    except (json.JSONDecodeError, TypeError, ValueError):
        failed = RemoteError(
            "slurm", f"the submit job failed: {payload[:300]}", "read its log under remote.workdir/submit-logs", exit_code=1
        )
        return {"ok": False, "code": failed.exit_code, "error": failed.as_dict()}
