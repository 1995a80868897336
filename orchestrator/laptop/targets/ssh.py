"""The laptop side of `orch submit|status|logs|cancel` against a SLURM cluster profile.

Everything the cluster needs (code snapshot, manifest) is copied to the login node and
submitted there before `submit` returns; nothing keeps running on the laptop. The
login node answers through `python -m orchestrator.login` (orchestrator/login/wire.py).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cluster.adaptors.git import SnapshotError, take_snapshot
from cluster.adaptors.ssh import Transport, TransportError, transport_for
from orchestrator.kernel.config.loading import ResolvedSweep
from orchestrator.kernel.config.models import ClusterProfile, SlurmProfile, SshSlurmProfile
from orchestrator.kernel.errors import ConfigError, RemoteError, ResourceError
from orchestrator.kernel.sweep_folder import BundleManifest, sweep_dir
from orchestrator.login import wire

A = TypeVar("A", bound=wire.Answer)
LOGIN_ENTRY = "orchestrator.login"  # `python -m` this on the login node


@dataclass(frozen=True)
class SlurmTarget:
    """A SLURM cluster profile with the transport that reaches its login node."""

    profile: SshSlurmProfile
    profile_file: Path
    transport: Transport

    @classmethod
    def of(cls, profile: ClusterProfile, profile_file: Path) -> SlurmTarget:
        if not isinstance(profile, SshSlurmProfile):
            raise ConfigError(
                profile_file,
                "backend",
                f"cluster profile '{profile.name}' is not a SLURM profile",
                "use --cluster with a profile whose backend is slurm (e.g. slurm-local)",
            )
        return cls(profile, profile_file, transport_for(profile.login))

    @property
    def workdir(self) -> str:
        return self.profile.remote.workdir

    def call(self, args: list[str], *, code_dir: str | None = None, timeout_s: float = 300) -> dict[str, Any]:
        """Run `python -m orchestrator.login ARGS` on the login node and return its answer."""
        return self.call_with_output(args, code_dir=code_dir, timeout_s=timeout_s)[0]

    def ask(self, model: type[A], args: list[str], *, code_dir: str | None = None, timeout_s: float = 300) -> A:
        """Like `call`, the answer read as its typed model (orchestrator/login/wire.py)."""
        return wire.read(model, self.call(args, code_dir=code_dir, timeout_s=timeout_s), self.profile_file)

    def remote_env(self, code_dir: str | None) -> dict[str, str]:
        return {**self.profile.remote.env, **({"PYTHONPATH": code_dir} if code_dir else {})}

    def stream(self, args: list[str], *, code_dir: str | None = None) -> int:
        return self.transport.stream([self.profile.remote.python, "-m", LOGIN_ENTRY, *args], env=self.remote_env(code_dir))

    def call_with_output(
        self, args: list[str], *, code_dir: str | None = None, timeout_s: float = 300
    ) -> tuple[dict[str, Any], list[str]]:
        """Like `call`, also returning what the command printed before its answer."""
        python = self.profile.remote.python
        try:
            result = self.transport.run([python, "-m", LOGIN_ENTRY, *args], env=self.remote_env(code_dir), timeout_s=timeout_s)
        except TransportError as exc:
            raise self.login_error(exc) from None
        answer = wire.find_answer(result.stdout)
        if answer is None:
            raise self._no_answer(python, result.returncode, result.stderr)
        return wire.decode(answer, self.profile_file), wire.printed_lines(result.stdout)

    def login_error(self, exc: TransportError) -> RemoteError:
        return RemoteError("login", exc.problem, exc.fix, where=self.profile_file)

    def _no_answer(self, python: str, returncode: int, stderr: str) -> RemoteError:
        tail = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "no output")
        where = self.profile_file
        if returncode == 127 or "No such file or directory" in stderr and python in stderr:
            return RemoteError(
                "remote.python",
                f"'{python}' not found on {self.transport.description}",
                "set remote.python to the Python that has this project installed",
                where=where,
            )
        missing_own = re.search(r"No module named '((?:orchestrator|cluster|trainables)[\w.]*)'", stderr)
        if missing_own:
            return RemoteError(
                "code",
                f"the shipped snapshot lacks module {missing_own.group(1)} (an untracked file?)",
                "git add it, or set remote.untracked_files: include",
                where=where,
            )
        if "No module named" in stderr:
            return RemoteError(
                "remote.python",
                f"'{python}' on {self.transport.description} lacks this project's dependencies ({tail})",
                "install them in that environment",
                where=where,
            )
        return RemoteError(
            "",
            f"the login node failed ({tail})",
            "run with the same profile on the login node to see the full error",
            where=where,
            exit_code=1,
        )

    def remove_unsubmitted(self, remote_dir: str) -> None:
        """Remove a sweep folder whose submit failed (only if no job was recorded in it)."""
        script = 'test -e "$1/jobs.json" || rm -rf -- "$1"'
        try:
            self.transport.run(["sh", "-c", script, "orch-cleanup", remote_dir], timeout_s=60)
        except TransportError:
            pass  # unreachable: there is nothing we could have left there either

    def upload(self, remote_dir: str, archive: bytes) -> None:
        for argv, stdin in ((["mkdir", "-p", remote_dir], None), (["tar", "-xzf", "-", "-C", remote_dir], archive)):
            try:
                result = self.transport.run(argv, stdin=stdin, timeout_s=300)
            except TransportError as exc:
                raise self.login_error(exc) from None
            if result.returncode != 0:
                raise RemoteError(
                    "remote.workdir",
                    f"cannot write {remote_dir} ({result.stderr.strip()[:200]})",
                    "choose a writable remote.workdir",
                    where=self.profile_file,
                )


def check_slurm_resources(resolved: ResolvedSweep, target: SlurmTarget) -> None:
    settings = target.profile.slurm
    asked = resolved.sweep.resources_per_trial
    if asked.gpu > settings.gpus_per_node:
        raise ResourceError(
            resolved.file,
            "resources_per_trial.gpu",
            f"a trial asks for {asked.gpu:g} GPUs but a node of '{target.profile.name}' gives {settings.gpus_per_node}",
            f"ask for at most {settings.gpus_per_node} or raise slurm.gpus_per_node in {target.profile_file}",
        )
    from cluster.slurm.job_spec import cpus_per_node

    if asked.cpu > cpus_per_node(settings):
        raise ResourceError(
            resolved.file,
            "resources_per_trial.cpu",
            f"a trial asks for {asked.cpu:g} CPUs but a job of '{target.profile.name}' has {cpus_per_node(settings)} per node",
            "ask for fewer CPUs or raise slurm.cpus_per_gpu / cpus_per_node in the profile",
        )


def _bundle_archive(manifest: BundleManifest, diff: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in (("bundle.json", manifest.to_json()), ("uncommitted.diff", diff)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass(frozen=True)
class PreparedSubmit:
    """What a submit ships, whatever the transport: the code snapshot and the sweep's manifest."""

    remote_dir: str
    code_archive: bytes
    bundle_archive: bytes
    manifest: BundleManifest
    warnings: list[str]
    code_version: str  # commit + sha256 of the uncommitted diff: equal for equal code


def prepare_submit(resolved: ResolvedSweep, profile: SlurmProfile, tracking_uri: str, sweep_id: str) -> PreparedSubmit:
    """Snapshot the code of the sweep's repository and write its manifest (nothing leaves this machine)."""
    try:
        snapshot, warnings = take_snapshot(resolved.file.parent, profile.remote.untracked_files)
    except SnapshotError as exc:
        raise ConfigError(resolved.file, "code", exc.problem, exc.fix) from None
    try:
        sweep_rel = resolved.file.resolve().relative_to(snapshot.repo_root)
    except ValueError:
        raise ConfigError(
            resolved.file,
            "",
            "the sweep file is outside the repository it would run",
            "keep sweeps under conf/sweeps/ of the repository",
        ) from None
    if str(sweep_rel) not in snapshot.files:
        raise ConfigError(
            resolved.file, "", "the sweep file is not tracked by git, so it would not be shipped", f"git add {sweep_rel}"
        )
    manifest = BundleManifest(
        sweep_id=sweep_id,
        sweep_name=resolved.sweep.name,
        project=resolved.project.name,
        sweep_file=str(sweep_rel),
        cluster=profile.model_dump(mode="json"),
        tracking_uri=tracking_uri,
        code=snapshot.describe(),
        submitted_at=time.time(),
        submitted_from=socket.gethostname(),
    )
    code_version = f"{snapshot.version.commit}+{hashlib.sha256(snapshot.version.diff.encode()).hexdigest()}"
    return PreparedSubmit(
        str(sweep_dir(profile.remote.workdir, sweep_id)),
        snapshot.archive,
        _bundle_archive(manifest, snapshot.version.diff),
        manifest,
        warnings,
        code_version,
    )


def submit(resolved: ResolvedSweep, target: SlurmTarget, tracking_uri: str, sweep_id: str) -> tuple[wire.SubmitAnswer, list[str]]:
    """Ship the code and manifest, submit on the login node; returns its answer and warnings."""
    prepared = prepare_submit(resolved, target.profile, tracking_uri, sweep_id)
    try:
        target.upload(f"{prepared.remote_dir}/code", prepared.code_archive)
        target.upload(prepared.remote_dir, prepared.bundle_archive)
        answer = target.ask(wire.SubmitAnswer, ["submit", prepared.remote_dir], code_dir=f"{prepared.remote_dir}/code")
    except RemoteError:
        target.remove_unsubmitted(prepared.remote_dir)  # nothing half-way: no folder without its jobs
        raise
    return answer, prepared.warnings


def ship_for_drill(resolved: ResolvedSweep, target: SlurmTarget) -> tuple[str, str]:
    """The sweep's code snapshot, uploaded to a drill folder on the cluster: (that folder, the sweep file in it)."""
    try:
        snapshot, _ = take_snapshot(resolved.file.parent, target.profile.remote.untracked_files)
    except SnapshotError as exc:
        raise ConfigError(resolved.file, "code", exc.problem, exc.fix) from None
    folder = f"{target.workdir}/drill/{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"
    target.upload(f"{folder}/code", snapshot.archive)
    return folder, str(resolved.file.resolve().relative_to(snapshot.repo_root))


def local_config_hash(target: SlurmTarget, sweep_id: str) -> str | None:
    """SHA-256 of this checkout's copy of a sweep's sweep file and project file (as `config_hash_of` on the
    cluster computes it for the submitted snapshot); None when this checkout does not have them."""
    from orchestrator.kernel.config.loading import load_sweep, sweep_files_hash
    from orchestrator.kernel.sweep_folder import sweep_dir

    manifest = target.ask(wire.ManifestAnswer, ["manifest", str(sweep_dir(target.workdir, sweep_id))], timeout_s=120).manifest
    local = Path(manifest["sweep_file"])
    if not local.exists():
        return None
    try:
        return sweep_files_hash(load_sweep(local))
    except ConfigError:
        return hashlib.sha256(local.read_bytes()).hexdigest()  # changed so much it no longer loads: differs
