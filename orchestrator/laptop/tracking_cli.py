"""`orch tracking up|down|status|deliver` and `orch compare`: the MLflow side of the CLI.

Imports of mlflow stay inside the commands so `orch --help` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from orchestrator.kernel.errors import OrchError

app = typer.Typer(no_args_is_help=True, help="A team MLflow tracking server: start, stop, check; deliver spooled metrics.")
console = Console() if sys.stdout.isatty() else Console(width=160, soft_wrap=True)

StateDir = typer.Option(None, "--state-dir", help="Folder holding .orch/ (default: the current directory)")


def _state(state_dir: Path | None):  # noqa: ANN202 - LocalState, imported lazily
    from orchestrator.laptop.state import LocalState

    return LocalState.in_directory(state_dir)


@app.command()
def up(
    port: int = typer.Option(5000, help="Port on 127.0.0.1 (or --host) to serve on"),
    host: str = typer.Option("127.0.0.1", help="Address to bind; keep 127.0.0.1 unless the team reaches it over the network"),
    backend_store_uri: str | None = typer.Option(
        None, "--backend-store-uri", help="sqlite:///path or postgresql://... (default: .orch/tracking/mlflow.db)"
    ),
    artifacts_destination: str | None = typer.Option(
        None,
        "--artifacts-destination",
        help="s3://bucket/prefix or a folder; the server proxies uploads (default: .orch/tracking/artifacts)",
    ),
    default_artifact_root: str | None = typer.Option(
        None, "--default-artifact-root", help="s3://bucket/prefix that clients write to directly (no proxy)"
    ),
    auth: bool = typer.Option(False, "--auth", help="Basic auth; admin from MLFLOW_TRACKING_USERNAME/PASSWORD"),
    state_dir: Path | None = StateDir,
) -> None:
    """Start the tracking server (does nothing if it is already up)."""
    from orchestrator.laptop.tracking_server import ServerSpec, tracking_dir
    from orchestrator.laptop.tracking_server import up as server_up

    if artifacts_destination and default_artifact_root:
        raise OrchError("give --artifacts-destination (proxied) or --default-artifact-root (direct), not both")
    state = _state(state_dir)
    folder = tracking_dir(state)
    backend = backend_store_uri or f"sqlite:///{folder / 'mlflow.db'}"
    if default_artifact_root:
        spec = ServerSpec(backend, default_artifact_root, host, port, serve_artifacts=False, auth=auth)
    else:
        spec = ServerSpec(backend, artifacts_destination or str(folder / "artifacts"), host, port, auth=auth)
    record, started = server_up(state, spec)
    word = "started" if started else "already up"
    console.print(
        f"MLflow tracking server {word} at [bold]{record.uri}[/] (pid {record.pid}, log {record.log_file})", highlight=False
    )
    console.print(
        f"use it with: export MLFLOW_TRACKING_URI={record.uri}   or   orch run SWEEP --tracking-uri {record.uri}", highlight=False
    )


@app.command()
def down(state_dir: Path | None = StateDir) -> None:
    """Stop the tracking server started by `up` (its whole process group)."""
    from orchestrator.laptop.tracking_server import down as server_down

    record = server_down(_state(state_dir))
    console.print(
        "no tracking server recorded" if record is None else f"stopped the tracking server at {record.uri} (pid {record.pid})",
        highlight=False,
    )


@app.command()
def status(state_dir: Path | None = StateDir) -> None:
    """Say whether the tracking server is up, and where."""
    from orchestrator.laptop.tracking_server import status as server_status

    record, healthy = server_status(_state(state_dir))
    if record is None:
        console.print("down (no server recorded; start one with: orch tracking up)", highlight=False)
        raise typer.Exit(3)
    if not healthy:
        console.print(f"down: recorded at {record.uri} (pid {record.pid}) but not answering", highlight=False)
        raise typer.Exit(3)
    destination = record.spec.get("artifacts")
    console.print(
        f"up {record.uri} (pid {record.pid}; store {record.spec.get('backend_store_uri')}; artifacts {destination})",
        highlight=False,
    )


@app.command()
def deliver(
    spool_dir: Path = typer.Argument(..., help="A metric spool folder (e.g. the sweep's metric_spool/ on the shared filesystem)"),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)"),
) -> None:
    """Deliver spooled runs, metrics, artifacts and statuses to MLflow, exactly once (safe to run again, or concurrently)."""
    from orchestrator.laptop.tracking_server import recorded_artifacts_destination
    from orchestrator.laptop.tracking_uri import resolve_tracking
    from orchestrator.tracking.artifacts import ArtifactRouter
    from orchestrator.tracking.client import TrackingClient
    from orchestrator.tracking.spool import deliver_spool

    uri = resolve_tracking(tracking_uri).uri
    if not spool_dir.is_dir():
        raise OrchError(f"{spool_dir}: no such spool folder")
    client = TrackingClient(uri)
    router = ArtifactRouter(client, recorded_artifacts_destination(_state(None), uri))
    report = deliver_spool(spool_dir, client, uploader=router)
    console.print(
        f"delivered {report.delivered} metric points and {report.artifacts} artifact folders "
        f"({report.skipped_duplicates} already on the server, {report.rejected} refused); "
        f"{report.runs_created} runs created ({report.runs_found} found), {report.statuses} run statuses set; "
        f"{report.pending} left for later",
        highlight=False,
    )
    if report.pending:
        raise typer.Exit(1)


def compare(
    sweep: str = typer.Argument(..., help="A sweep id, as printed by orch run / orch submit"),
    metric: str | None = typer.Option(None, "--metric", "-m", help="Sort by this metric (default: the sweep's)"),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, the profile, or .orch/)"
    ),
    cluster: str | None = typer.Option(None, "--cluster", "-c", help="Read tracking.uri from this cluster profile"),
    conf: Path | None = typer.Option(None, "--conf", help="The workspace's conf/ folder (default: found from here upward)"),
    group_by: bool = typer.Option(
        False, "--group-by", help="Summarise over seeds: mean, std and count per group of trials (see --by)"
    ),
    by: list[str] = typer.Option(
        [], "--by", help="With --group-by: group by this hyperparameter (repeat; default: all varied but seed)"
    ),
    also: list[str] = typer.Option([], "--also", help="With --group-by: summarise this metric too (repeat)"),
) -> None:
    """Compare the trials of a sweep: sorted by the metric, with the hyperparameters that differ; with --group-by,
    the mean, standard deviation and count per group, also recorded on the sweep's parent run."""
    from orchestrator.laptop.compare import comparison_table, load_comparison
    from orchestrator.laptop.tracking_uri import local_tracking

    uri = local_tracking(tracking_uri, cluster, conf).uri
    comparison = load_comparison(uri, sweep, metric)
    if not (group_by or by):
        console.print(comparison_table(comparison))
        console.print(f"MLflow experiment {comparison.experiment_id}, parent run {comparison.parent_run_id}", highlight=False)
        return
    from orchestrator.laptop.seed_groups import group_keys, record_on_parent, summarise, summary_table

    summary = summarise(comparison, group_keys(comparison, by), also)
    console.print(summary_table(summary))
    if comparison.parent_run_id:
        written = record_on_parent(uri, comparison.parent_run_id, summary)
        console.print(f"parent run {comparison.parent_run_id}: {', '.join(written)}", highlight=False)


def main() -> None:
    """`python -m orchestrator.laptop.tracking_cli tracking ...|compare ...`: the same commands outside `orch`."""
    root = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
    root.add_typer(app, name="tracking")
    root.command()(compare)
    try:
        root()
    except OrchError as exc:
        Console(stderr=True).print(f"error: {exc.one_line()}", style="red", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
