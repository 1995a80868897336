"""Where a command finds MLflow: the one resolver of the tracking URI, one order for every command.

    1. `--tracking-uri` on the command line            source "--tracking-uri"
    2. the `MLFLOW_TRACKING_URI` environment variable  source "MLFLOW_TRACKING_URI"
    3. the cluster profile's `tracking.uri`            source "<profile file>: tracking.uri"
    4. the embedded default, `.orch/mlflow.db`         source "the embedded default"

`orch run`, `orch ui` and `orch compare` fall back to 4; `orch submit` cannot (its jobs run elsewhere)
and says which key to set; `orch tracking deliver` needs 1 or 2. The artifact root comes from the
profile's `tracking.artifact_location`, else next to the embedded store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.kernel.config.models import TrackingConfig
from orchestrator.kernel.errors import ConfigError, UsageError
from orchestrator.laptop.state import LocalState

ENV = "MLFLOW_TRACKING_URI"


@dataclass(frozen=True)
class TrackingTarget:
    uri: str
    artifact_root: str | None
    embedded: bool
    source: str  # where the URI came from, for messages


def find_tracking(
    cli_uri: str | None,
    profile: TrackingConfig | None = None,
    profile_file: Path | str | None = None,
    state: LocalState | None = None,
) -> TrackingTarget | None:
    """The tracking target by the one order; None when nothing names one and there is no embedded default."""
    artifact_root = profile.artifact_location if profile is not None else None
    if cli_uri:
        return TrackingTarget(cli_uri, artifact_root, embedded=False, source="--tracking-uri")
    if os.environ.get(ENV):
        return TrackingTarget(os.environ[ENV], artifact_root, embedded=False, source=ENV)
    if profile is not None and profile.uri:
        return TrackingTarget(profile.uri, artifact_root, embedded=False, source=f"{profile_file or 'the profile'}: tracking.uri")
    if state is not None:
        return TrackingTarget(
            state.tracking_uri, artifact_root or state.artifacts_dir.as_uri(), embedded=True, source="the embedded default"
        )
    return None


def check_reachable(target: TrackingTarget) -> None:
    """A tracking server that does not answer is one line naming the URI and where it came from, in seconds."""
    from orchestrator.tracking.client import TrackingClient

    problem = TrackingClient(target.uri).unreachable()
    if problem is None:
        return
    where, _, key = target.source.rpartition(": ")
    fix = "start it (orch tracking up), or point the URI at a running server"
    if target.source == "--tracking-uri":
        raise UsageError(f"--tracking-uri {target.uri}: {problem}; fix: {fix}")
    if target.source == ENV:
        raise UsageError(f"{ENV}={target.uri}: {problem}; fix: {fix}, or unset {ENV}")
    raise ConfigError(where, key, f"{target.uri}: {problem}", fix)


def local_tracking(cli_uri: str | None, cluster: str | None, conf: Path | None) -> TrackingTarget:
    """For commands that read runs on this machine (`orch ui`, `orch compare`): the one order, with the
    embedded default last, which must hold runs already."""
    from orchestrator.kernel.config.loading import find_cluster

    found = find_cluster(cluster, conf) if cluster else None
    state = LocalState.in_directory()
    target = resolve_tracking(cli_uri, found[0].tracking if found else None, found[1] if found else None, state)
    if target.embedded and not state.mlflow_db.is_file():
        raise UsageError(
            f"no runs yet in {state.mlflow_db}; fix: run a sweep first (orch run conf/sweeps/quickstart.yaml), "
            "or pass --tracking-uri"
        )
    return target


def resolve_tracking(
    cli_uri: str | None,
    profile: TrackingConfig | None = None,
    profile_file: Path | str | None = None,
    state: LocalState | None = None,
) -> TrackingTarget:
    """Like `find_tracking`, but a missing URI is an error that says what to set."""
    target = find_tracking(cli_uri, profile, profile_file, state)
    if target is not None:
        return target
    if profile_file is not None:
        raise ConfigError(
            profile_file,
            "tracking.uri",
            "a SLURM profile needs an MLflow tracking URI the jobs can reach",
            "set tracking.uri (e.g. http://mlflow.example.org:5000) in the profile",
        )
    raise UsageError(f"no tracking server given; fix: pass --tracking-uri or set {ENV}")
