"""Where a sweep is tracked: the MLflow tracking URI and artifact root to use.

Precedence: `--tracking-uri` on the command line, then `MLFLOW_TRACKING_URI`, then
the cluster profile's `tracking.uri`, then the embedded default in `.orch/`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from orchestrator.kernel.config.models import TrackingConfig
from orchestrator.laptop.state import LocalState


@dataclass(frozen=True)
class TrackingTarget:
    uri: str
    artifact_root: str | None
    embedded: bool


def resolve_tracking(cli_uri: str | None, profile: TrackingConfig, state: LocalState) -> TrackingTarget:
    uri = cli_uri or os.environ.get("MLFLOW_TRACKING_URI") or profile.uri
    if uri:
        return TrackingTarget(uri, profile.artifact_location, embedded=False)
    return TrackingTarget(state.tracking_uri, profile.artifact_location or state.artifacts_dir.as_uri(), embedded=True)
