"""The one adaptor that runs SLURM's command-line tools (on the login node), with typed results.

Every call is an argument list with a timeout; one `sacct` call answers for all the
jobs of a query (no per-job polling).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.kernel.errors import OrchError
from orchestrator.kernel.states import JobState


class SlurmError(OrchError):
    def __init__(self, command: Sequence[str], returncode: int, message: str) -> None:
        super().__init__(f"{command[0]} failed ({returncode}): {message}")
        self.command, self.returncode, self.message = list(command), returncode, message


# The reason SLURM gives a job it requeued and HELD because a node failed while the job launched: it stays
# pending forever unless released (`scontrol release`), which the agent (queued sweeps) and `orch status`
# (every sweep it reports on) do.
HELD_AFTER_FAILED_LAUNCH = "launch failed requeued held"


def held_after_failed_launch(state: JobState, reason: str) -> bool:
    return state.is_waiting and HELD_AFTER_FAILED_LAUNCH in reason.lower().replace("_", " ")


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    name: str
    state: JobState
    node_list: str
    elapsed: str
    restarts: int
    reason: str
    alloc_tres: str


@dataclass(frozen=True)
class QueueJob:
    """One job (or array task) as `squeue` sees it."""

    job_id: str
    name: str
    state: JobState
    elapsed_s: float
    restarts: int
    reason: str


@dataclass(frozen=True)
class SlurmClient:
    env: Mapping[str, str]
    timeout_s: float = 60

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.timeout_s, env={**os.environ, **self.env}, check=False
            )
        except FileNotFoundError:
            raise SlurmError(argv, 127, f"{argv[0]} not found: is this a SLURM login node?") from None
        except subprocess.TimeoutExpired:
            raise SlurmError(argv, 124, f"no answer in {self.timeout_s:g} s: is slurmctld up?") from None
        if check and done.returncode != 0:
            raise SlurmError(argv, done.returncode, _last_line(done.stderr or done.stdout))
        return done

    def test_only(self, sbatch_args: list[str]) -> str:
        """Ask SLURM whether (and when) a job of this shape would start, without submitting it."""
        done = self._run(["sbatch", "--test-only", *sbatch_args, "--wrap", "true"], check=False)
        message = (done.stderr + done.stdout).strip()
        if done.returncode != 0:
            raise SlurmError(["sbatch", "--test-only"], done.returncode, _last_line(message))
        return _last_line(message)

    def srun_accepts(self, option: str) -> bool:
        """Whether this cluster's `srun --help` lists `option`: a SPANK plugin's options (Pyxis's
        `--container-image`) show there only where the plugin is loaded."""
        done = self._run(["srun", "--help"], check=False)
        return option in done.stdout + done.stderr

    def submit(self, sbatch_args: list[str], script: str | None = None) -> str:
        """`sbatch --parsable OPTIONS [SCRIPT]`: the new job's id; SlurmError when SLURM refuses it."""
        done = self._run(["sbatch", "--parsable", *sbatch_args, *([script] if script else [])])
        return done.stdout.strip().split(";")[0]

    def signal(self, job_id: str, signal_name: str) -> None:
        """Send a signal to every process of the job (`scancel --full --signal=NAME`), batch shell included."""
        self._run(["scancel", "--full", f"--signal={signal_name}", job_id], check=False)

    def job_fields(self, job_id: str) -> dict[str, str]:
        """`scontrol show job -o`: the job's record as KEY=VALUE fields ({} when SLURM no longer knows it)."""
        return _fields(self._run(["scontrol", "show", "job", "-o", job_id], check=False).stdout)

    def node_fields(self, node: str) -> dict[str, str]:
        """`scontrol show node -o`: the node's record as KEY=VALUE fields."""
        return _fields(self._run(["scontrol", "show", "node", "-o", node], check=False).stdout)

    def partitions(self) -> dict[str, dict[str, str]]:
        done = self._run(["scontrol", "show", "partition", "--oneliner"])
        result = {}
        for line in done.stdout.splitlines():
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            if "PartitionName" in fields:
                result[fields["PartitionName"]] = fields
        return result

    def partition_max_time_min(self, partition: str) -> int | None:
        """The partition's MaxTime in minutes (None: unlimited); SlurmError if there is no such partition."""
        fields = self.partitions().get(partition)
        if fields is None:
            raise SlurmError(["scontrol", "show", "partition"], 1, f"invalid partition specified: {partition}")
        return parse_duration_min(fields.get("MaxTime", "UNLIMITED"))

    def jobs(self, job_ids: Iterable[str]) -> dict[str, JobRecord]:
        """One sacct call for all the given jobs (array tasks and requeues folded in)."""
        ids = [j for j in job_ids if j]
        if not ids:
            return {}
        fields = "JobID,JobName,State,NodeList,Elapsed,Reason,AllocTRES"
        done = self._run(
            ["sacct", "--parsable2", "--noheader", "--allocations", "--duplicates", f"--format={fields}", "-j", ",".join(ids)]
        )
        records: dict[str, JobRecord] = {}
        for line in done.stdout.splitlines():
            parts = line.split("|")
            if len(parts) < 7:
                continue
            # With --duplicates every attempt of a requeued job is a line, the latest last.
            earlier = records.get(parts[0])
            restarts = earlier.restarts + 1 if earlier else 0
            records[parts[0]] = JobRecord(
                parts[0], parts[1], JobState.parse(parts[2]), parts[3], parts[4], restarts, parts[5], parts[6]
            )
        missing = [j for j in ids if j not in records]
        if missing:  # accounting may lag a few seconds behind a fresh submit: ask squeue
            records.update(self._squeue(missing))
        return records

    def queued(self, job_ids: Iterable[str]) -> dict[str, JobRecord]:
        """squeue's view of these jobs (its reason is current; sacct's may lag), only those still queued."""
        ids = [j for j in job_ids if j]
        return self._squeue(ids) if ids else {}

    def _squeue(self, ids: list[str]) -> dict[str, JobRecord]:
        done = self._run(["squeue", "--noheader", "--format=%i|%j|%T|%N|%M|%r", "--jobs", ",".join(ids)], check=False)
        records = {}
        for line in done.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 6:
                records[parts[0]] = JobRecord(parts[0], parts[1], JobState.parse(parts[2]), parts[3], parts[4], 0, parts[5], "")
        return records

    def queue_snapshot(self, name_prefix: str) -> list[QueueJob]:
        """Every job slurmctld knows (pending, running and ended within MinJobAge) whose name starts with
        `name_prefix`: ONE squeue call, array tasks one per line as `123_4` (squeue's JobID field would give
        each task's own internal job number instead)."""
        fields = "JobArrayID:|,Name:|,State:|,TimeUsed:|,RestartCnt:|,Reason:"
        done = self._run(["squeue", "--noheader", "--array", "--states=all", f"--Format={fields}"])
        jobs = []
        for line in done.stdout.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) < 6 or not parts[1].startswith(name_prefix):
                continue
            restarts = int(parts[4]) if parts[4].isdigit() else 0
            jobs.append(QueueJob(parts[0], parts[1], JobState.parse(parts[2]), parse_duration_s(parts[3]), restarts, parts[5]))
        return jobs

    def jobs_named(self, names: Iterable[str], since: str = "now-14days") -> list[JobRecord]:
        """Accounting records of jobs with these names (ONE sacct call), for jobs squeue no longer shows."""
        wanted = sorted({n for n in names if n})
        if not wanted:
            return []
        done = self._run(
            [
                "sacct",
                "--parsable2",
                "--noheader",
                "--allocations",
                f"--starttime={since}",
                "--format=JobID,JobName,State,NodeList,Elapsed,Reason,AllocTRES",
                f"--name={','.join(wanted)}",
            ]
        )
        records = []
        for line in done.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 7:
                records.append(JobRecord(parts[0], parts[1], JobState.parse(parts[2]), parts[3], parts[4], 0, parts[5], parts[6]))
        return records

    def attempts(self, job_id: str) -> list[JobRecord]:
        """Every attempt of one job (requeues included), oldest first: ONE sacct call."""
        done = self._run(
            [
                "sacct",
                "--parsable2",
                "--noheader",
                "--allocations",
                "--duplicates",
                "-j",
                job_id,
                "--format=JobID,JobName,State,NodeList,Elapsed,Reason,AllocTRES",
            ],
            check=False,
        )
        records: list[JobRecord] = []
        for line in done.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 7:
                records.append(
                    JobRecord(parts[0], parts[1], JobState.parse(parts[2]), parts[3], parts[4], len(records), parts[5], parts[6])
                )
        return records

    def release(self, job_ids: Iterable[str], strict: bool = False) -> None:
        """`scontrol release`: jobs SLURM held (requeued after a node failed during launch, or submitted held).
        `strict`: SlurmError when SLURM refuses (otherwise a job that was not held is no error)."""
        ids = [j for j in job_ids if j]
        if ids:
            self._run(["scontrol", "release", ",".join(ids)], check=strict)

    def cancel(self, job_ids: Iterable[str]) -> None:
        ids = [j for j in job_ids if j]
        if ids:
            self._run(["scancel", *ids], check=False)


def _fields(text: str) -> dict[str, str]:
    return dict(token.split("=", 1) for token in text.split() if "=" in token)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[-1] if lines else "no output"
    return re.sub(r"^sbatch: (error: )?", "", line)


def parse_duration_s(text: str) -> float:
    """An elapsed time as squeue/sacct print it ([D-]HH:MM:SS, MM:SS) in seconds; 0 when unparsable."""
    try:
        days, _, clock = text.strip().rpartition("-")
        parts = [int(p) for p in clock.split(":")]
    except ValueError:
        return 0.0
    while len(parts) < 3:
        parts.insert(0, 0)
    return float(int(days or 0) * 86400 + parts[-3] * 3600 + parts[-2] * 60 + parts[-1])


def parse_duration_min(text: str) -> int | None:
    """SLURM durations ([D-]HH:MM:SS, MM:SS, MM, UNLIMITED) in whole minutes; None when unlimited."""
    if text.upper() in ("UNLIMITED", "INFINITE", "NONE", ""):
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if len(parts) == 1:
        hours, minutes, seconds = 0, parts[0], 0
    elif len(parts) == 2:
        hours, minutes, seconds = 0, parts[0], parts[1]
    else:
        hours, minutes, seconds = parts[-3], parts[-2], parts[-1]
    return (int(days or 0) * 24 + hours) * 60 + minutes + (1 if seconds else 0)
