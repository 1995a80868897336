"""The per-sweep folder on the cluster's shared filesystem. One module owns its layout.

<remote.workdir>/sweeps/<sweep_id>/
    code/            the code snapshot (PYTHONPATH of every job of this sweep)
    bundle.json      what the sweep is: ids, sweep file, profile, tracking, code version
    uncommitted.diff the uncommitted changes the snapshot includes
    jobs.json        SLURM job ids of the sweep (written by the submit on the login node)
    submitit/        submitit's job folder (pickles, stdout/stderr per job, appended)
    ray_results/     the Ray Tune experiment(s), restored after a requeue:
                     <sweep_id>/ (layout allocation) or <sweep_id>-s<i>/ per shard (layout array)
    trials.json      trial states, written by the running job (trials-s<i>.json: shard i's)
    mlflow_runs.json trial id -> MLflow run id, so a restarted job reuses the runs (mlflow_runs-s<i>.json)
    shards.json      layout array: every trial (stable id, config) and its shard (cluster.node.shards)
    ray/<job>.<n>/   Ray head address of each job attempt, for the other nodes
    result-<job>.json what a finished job reports
    attempts.json    every attempt of the job(s): SLURM job, restart, node, fencing token, how it ended
    attempt.json     the current attempt's fencing token (older attempts stop writing to MLflow)
    recovery.json    steps re-done and restart time per trial and attempt
    checkpoint_now.json  appears when SLURM's signal asks every trial to checkpoint (trainables.runtime)
                     (attempts, attempt, recovery and checkpoint_now have an -s<i> twin per shard)
    metric_spool/    metrics, runs and artifacts not yet on the tracking server (orchestrator.tracking.spool)
    time_fit.json    the time limit chosen by slurm.fit_time_limit, and why
    CANCELLED        present once the sweep was cancelled
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from orchestrator.kernel.config.models import SlurmProfile, parse_profile
from orchestrator.kernel.files import write_atomic

SWEEPS_DIRNAME = "sweeps"
SPOOL_DIRNAME = "metric_spool"
RUNS_LEDGER_STEM = "mlflow_runs"


@dataclass(frozen=True)
class BundleManifest:
    sweep_id: str
    sweep_name: str
    project: str
    sweep_file: str  # relative to code/
    cluster: dict[str, Any]  # the resolved profile, as plain data
    tracking_uri: str
    code: dict[str, Any]
    submitted_at: float
    submitted_from: str
    parent_run_id: str | None = None
    experiment_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def profile(self) -> SlurmProfile:
        """The SLURM profile the sweep was submitted with, typed (validated as it was at submit)."""
        # Sweeps submitted before profiles had kinds carry every key of every kind, unset ones empty.
        legacy = {"cpus": "auto", "gpus": "auto", "login": None, "rest": None}
        profile = parse_profile({k: v for k, v in self.cluster.items() if not (k in legacy and v == legacy[k])})
        if profile.backend != "slurm":
            raise ValueError(f"the sweep {self.sweep_id} was not submitted to SLURM (profile {profile.name})")
        return profile

    @classmethod
    def from_json(cls, text: str) -> BundleManifest:
        return cls(**json.loads(text))


def sweep_dir(workdir: str, sweep_id: str) -> PurePosixPath:
    """Where a sweep lives on the cluster (a POSIX path: it may not exist on this machine)."""
    return PurePosixPath(workdir) / SWEEPS_DIRNAME / sweep_id


@dataclass(frozen=True)
class Bundle:
    """The sweep folder, on the machine where it exists (login node or compute node)."""

    root: Path

    code = property(lambda self: self.root / "code")
    manifest_file = property(lambda self: self.root / "bundle.json")
    diff_file = property(lambda self: self.root / "uncommitted.diff")
    jobs_file = property(lambda self: self.root / "jobs.json")
    submitit_dir = property(lambda self: self.root / "submitit")
    ray_results = property(lambda self: self.root / "ray_results")
    trials_file = property(lambda self: self.root / "trials.json")
    runs_file = property(lambda self: self.root / "mlflow_runs.json")
    cancelled_marker = property(lambda self: self.root / "CANCELLED")
    shards_file = property(lambda self: self.root / "shards.json")
    spool_dir = property(lambda self: self.root / SPOOL_DIRNAME)
    time_fit_file = property(lambda self: self.root / "time_fit.json")

    def attempts_file(self, shard: int | None) -> Path:
        return ledger_sibling(self.runs_file_of(shard), "attempts")

    def attempt_file(self, shard: int | None) -> Path:
        return ledger_sibling(self.runs_file_of(shard), "attempt")

    def recovery_file(self, shard: int | None) -> Path:
        return ledger_sibling(self.runs_file_of(shard), "recovery")

    def checkpoint_now_file(self, shard: int | None) -> Path:
        return ledger_sibling(self.runs_file_of(shard), "checkpoint_now")

    def result_file(self, job_id: str) -> Path:
        return self.root / f"result-{job_id}.json"

    def result_files(self) -> list[Path]:
        return sorted(self.root.glob("result-*.json"))

    # Layout array: each shard (array task) has its own experiment, trial states and run ledger,
    # because the tasks run at the same time and each rewrites its files whole.
    def experiment_dir(self, sweep_id: str, shard: int | None = None) -> Path:
        return self.ray_results / (sweep_id if shard is None else f"{sweep_id}-s{shard}")

    def experiment_dirs(self, sweep_id: str) -> list[Path]:
        """Every Tune experiment of the sweep (one, or one per shard)."""
        shards = sorted((p for p in self.ray_results.glob(f"{sweep_id}-s*") if _shard_order(p) >= 0), key=_shard_order)
        return [path for path in [self.experiment_dir(sweep_id), *shards] if path.is_dir()]

    def trials_file_of(self, shard: int | None) -> Path:
        return self.trials_file if shard is None else self.root / f"trials-s{shard}.json"

    def runs_file_of(self, shard: int | None) -> Path:
        return self.runs_file if shard is None else self.root / f"mlflow_runs-s{shard}.json"

    def trials_files(self) -> dict[int | None, Path]:
        """shard (None: the whole sweep) -> its trial-state file, for those that exist."""
        found: dict[int | None, Path] = {None: self.trials_file} if self.trials_file.exists() else {}
        found.update(
            {_shard_order(p): p for p in sorted(self.root.glob("trials-s*.json"), key=_shard_order) if _shard_order(p) >= 0}
        )
        return found

    def runs_files(self) -> list[Path]:
        shards = sorted((p for p in self.root.glob("mlflow_runs-s*.json") if _shard_order(p) >= 0), key=_shard_order)
        return [path for path in [self.runs_file, *shards] if path.exists()]

    def rendezvous(self, attempt_key: str) -> Path:
        """Where the Ray head of one job attempt tells the other nodes its address."""
        return self.root / "ray" / attempt_key

    def manifest(self) -> BundleManifest:
        return BundleManifest.from_json(self.manifest_file.read_text())

    def write_manifest(self, manifest: BundleManifest) -> None:
        write_atomic(self.manifest_file, manifest.to_json(), mode=0o600)  # the profile in it may name a store's password

    def read_json(self, path: Path, default: Any) -> Any:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return default


def ledger_sibling(ledger: Path, kind: str) -> Path:
    """A file that belongs with a run ledger: `mlflow_runs.json` -> `<kind>.json`, `mlflow_runs-s3.json` ->
    `<kind>-s3.json` (the sweep folder's files of one shard); any other ledger name (a tracker used outside
    a sweep folder) -> `<ledger stem>.<kind>.json`, never the ledger itself."""
    if ledger.name.startswith(RUNS_LEDGER_STEM):
        return ledger.with_name(kind + ledger.name[len(RUNS_LEDGER_STEM) :])
    return ledger.with_name(f"{ledger.stem}.{kind}.json")


def _shard_order(path: Path) -> int:
    """The shard number in a per-shard name (`...-s3`, `trials-s3.json`)."""
    digits = path.name.removesuffix(".json").rpartition("-s")[2]
    return int(digits) if digits.isdigit() else -1
