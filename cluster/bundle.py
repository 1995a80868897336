"""The per-sweep folder on the cluster's shared filesystem. One module owns its layout.

    <remote.workdir>/sweeps/<sweep_id>/
        code/            the code snapshot (PYTHONPATH of every job of this sweep)
        bundle.json      what the sweep is: ids, sweep file, profile, tracking, code version
        uncommitted.diff the uncommitted changes the snapshot includes
        jobs.json        SLURM job ids of the sweep (written by the submit on the login node)
        submitit/        submitit's job folder (pickles, stdout/stderr per job, appended)
        ray_results/     the Ray Tune experiment (restored after a requeue)
        trials.json      trial states, written by the running job
        mlflow_runs.json trial id -> MLflow run id (so a restarted job reuses the runs)
        ray/<job>.<n>/   Ray head address of each job attempt, for the other nodes
        result-<job>.json what a finished job reports
        CANCELLED        present once the sweep was cancelled
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

SWEEPS_DIRNAME = "sweeps"


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

    def rendezvous(self, attempt_key: str) -> Path:
        """Where the Ray head of one job attempt tells the other nodes its address."""
        return self.root / "ray" / attempt_key

    def manifest(self) -> BundleManifest:
        return BundleManifest.from_json(self.manifest_file.read_text())

    def write_manifest(self, manifest: BundleManifest) -> None:
        write_atomic(self.manifest_file, manifest.to_json())

    def read_json(self, path: Path, default: Any) -> Any:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return default


def write_atomic(path: Path, text: str) -> None:
    """Write a file so readers see the old or the new content, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
