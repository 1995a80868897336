"""The on-disk layout of the embedded default state, `.orch/` under the working directory.

This module is the only one that knows where things live in `.orch/`; nothing is
created until `ensure()` is called, so failed validation leaves no trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STATE_DIRNAME = ".orch"


@dataclass(frozen=True)
class LocalState:
    root: Path

    @classmethod
    def in_directory(cls, directory: Path | None = None) -> LocalState:
        return cls((directory or Path.cwd()).resolve() / STATE_DIRNAME)

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    def run_ledger(self, sweep_id: str) -> Path:
        """A local sweep's trial id -> MLflow run id ledger (what a command trainable reads its run id from)."""
        return self.root / "sweeps" / sweep_id / "mlflow_runs.json"

    def sweep_record(self, sweep_id: str) -> Path:
        """What `orch resume` needs to continue a local sweep (laptop.targets.local.LocalSweepRecord)."""
        return self.root / "sweeps" / sweep_id / "sweep.json"

    @property
    def ray_results_dir(self) -> Path:
        return self.root / "ray_results"

    def ensure(self) -> LocalState:
        for folder in (self.root, self.artifacts_dir, self.ray_results_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self
