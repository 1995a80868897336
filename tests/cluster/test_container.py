"""Containers (`remote.container`): the profile section, the job scripts submitit writes for apptainer, pyxis and
none (golden files), the signal guard inside the container, and the refusal of a runtime the cluster lacks."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cluster.adaptors.slurm import SlurmClient
from cluster.slurm.container import apptainer_program, binds, check_runtime, guarded_python, image_tags, launch
from cluster.slurm.submitit_backend import make_executor
from orchestrator.kernel.config.models import ContainerSettings, RemoteSettings, SlurmSettings
from orchestrator.kernel.errors import RemoteError
from orchestrator.kernel.sweep_folder import Bundle
from tests.cluster.test_sbatch_script import assert_usr2_ignored_until_handled, usr2_program
from tests.conftest import REPO, assert_one_error_line, run_orch

GOLDEN = Path(__file__).parent / "golden"
SWEEP_ID = "avae-tiny-20261123-120000-abcd"
SETTINGS = SlurmSettings(partition="gpu", account="lab", nodes=2, gpus_per_node=4, cpus_per_gpu=8, time_limit_min=720)
CONTAINERS = {
    "apptainer": ContainerSettings(
        runtime="apptainer", image="/project/lab/images/orch.sif", binds=["/project/lab/data:/data:ro"]
    ),
    "pyxis": ContainerSettings(runtime="pyxis", image="/project/lab/images/orch.sqsh", binds=["/project/lab/data:/data:ro"]),
    "none": ContainerSettings(),
}


def _remote(container: ContainerSettings, workdir: str = "/scratch/orch") -> RemoteSettings:
    return RemoteSettings(workdir=workdir, python="/opt/venv/bin/python", container=container)


def _script(remote: RemoteSettings, bundle_root: Path) -> str:
    """The whole batch script submitit would write for the sweep (its real command line included)."""
    executor = make_executor(SETTINGS, remote, SWEEP_ID, Bundle(bundle_root), host_python="/opt/orch/venv/bin/python")
    return executor._make_submission_file_text(executor._submitit_command_str, "uid")  # noqa: SLF001


@pytest.mark.parametrize("runtime", sorted(CONTAINERS))
def test_job_script_matches_golden_file(runtime: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tool(tmp_path, "srun", "exit 0")  # submitit looks for srun; no apptainer or singularity: the command names `apptainer`
    monkeypatch.setenv("PATH", str(tmp_path))
    text = _script(_remote(CONTAINERS[runtime]), Path(f"/scratch/orch/sweeps/{SWEEP_ID}"))
    golden = GOLDEN / f"job_{runtime}.sh"
    if os.environ.get("ORCH_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), "regenerate with ORCH_UPDATE_GOLDEN=1 after an intended change"


def test_the_command_lines() -> None:
    guard = shlex.quote('trap \'\' USR2; exec "$0" "$@"')
    apptainer = launch(_remote(CONTAINERS["apptainer"]), "/host/python")
    assert apptainer.srun_args == []
    assert apptainer.python == (
        f"/bin/sh -c {guard} apptainer exec --nv --bind /scratch/orch:/scratch/orch,/project/lab/data:/data:ro "
        f"/project/lab/images/orch.sif /bin/sh -c {guard} /opt/venv/bin/python"
    )
    pyxis = launch(_remote(CONTAINERS["pyxis"]), "/host/python")
    assert pyxis.python == f"/bin/sh -c {guard} /opt/venv/bin/python"
    assert pyxis.srun_args == [
        "--container-image=/project/lab/images/orch.sqsh",
        "--container-mounts=/scratch/orch:/scratch/orch,/project/lab/data:/data:ro",
    ]
    none = launch(_remote(CONTAINERS["none"]), "/host/python")
    assert (none.python, none.srun_args) == (guarded_python("/host/python"), [])
    cpu = ContainerSettings(runtime="apptainer", image="docker://orch:cpu", gpu=False, extra_args=["--cleanenv"])
    singularity = launch(_remote(cpu), "/host/python", apptainer="singularity").python
    assert " singularity exec --bind /scratch/orch:/scratch/orch --cleanenv docker://orch:cpu " in singularity


def test_workdir_is_bound_once() -> None:
    container = ContainerSettings(runtime="pyxis", image="orch:cpu", binds=["/scratch/orch", "/data"])
    assert binds(_remote(container, workdir="/scratch/orch/")) == ["/scratch/orch:/scratch/orch", "/data:/data"]


def _tool(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


# A stand-in for `apptainer exec [OPTIONS] IMAGE COMMAND...`: drops the options and the image, records them, and
# execs the command (as the runtime's starter ends in the container's process).
FAKE_APPTAINER = """shift
while [ "$#" -gt 0 ]; do case "$1" in --bind) shift 2;; --*) shift;; *) break;; esac; done
echo "$1" > "$RECORD"
shift
exec "$@\""""


def test_usr2_is_ignored_inside_the_container_until_python_handles_it(tmp_path: Path) -> None:
    """The guard runs before the runtime AND inside it, right before Python: a USR2 in the job's first instant
    is ignored, a handler Python installs later still gets it (preemption checkpoints inside the container)."""
    bin_dir = tmp_path / "bin"
    _tool(bin_dir, "apptainer", FAKE_APPTAINER)
    container = ContainerSettings(runtime="apptainer", image="/images/orch.sif", python=sys.executable)
    command = launch(_remote(container), "/unused/python", apptainer=str(bin_dir / "apptainer")).python
    handled = tmp_path / "handled"
    env = {**os.environ, "RECORD": str(tmp_path / "image")}
    process = subprocess.Popen(
        [*shlex.split(command), "-c", usr2_program(handled)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert_usr2_ignored_until_handled(process, handled)  # "ignoring" comes from Python: every shell before it has exec'd
    assert (tmp_path / "image").read_text().strip() == "/images/orch.sif"


HOSTILE = ["a'; touch {marker}; echo '", "$(touch {marker})", "`touch {marker}`"]


@pytest.mark.parametrize("runtime", ["apptainer", "pyxis"])
@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_image_and_binds_stay_inert(tmp_path: Path, runtime: str, hostile: str) -> None:
    """Image and bind paths reach the job script quoted: the runtime gets them as they are, nothing runs."""
    marker = tmp_path / "PWNED"
    value = hostile.format(marker=marker)
    image = f"/images/{value}.{'sif' if runtime == 'apptainer' else 'sqsh'}"
    container = ContainerSettings(runtime=runtime, image=image, binds=[f"/data/{value}:/data"])  # type: ignore[arg-type]
    script = tmp_path / "job.sh"
    script.write_text(_script(_remote(container, workdir=str(tmp_path)), tmp_path / "sweep"))
    bin_dir = tmp_path / "bin"
    _tool(bin_dir, "srun", 'for arg in "$@"; do printf "%s\\n" "$arg"; done > "$RECORD"')
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "RECORD": str(tmp_path / "argv")}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert not marker.exists(), "a hostile value was executed by the job script"
    argv = (tmp_path / "argv").read_text()
    if runtime == "pyxis":
        assert (
            f"--container-image={image}\n" in argv and f"--container-mounts={tmp_path}:{tmp_path},/data/{value}:/data\n" in argv
        )
    else:  # srun runs the guard's shell; the image and binds are arguments of apptainer exec
        assert f"\n{image}\n" in argv and f"\n{tmp_path}:{tmp_path},/data/{value}:/data\n" in argv


@pytest.mark.parametrize(
    ("container", "words"),
    [
        ("/project/lab/images/orch.sif", "container: {runtime: apptainer, image: /project/lab/images/orch.sif}"),
        ({"runtime": "apptainer"}, "needs an image"),
        ({"runtime": "pyxis", "image": "/images/orch.sif"}, "pyxis runs an enroot .sqsh"),
        ({"runtime": "apptainer", "image": "ubuntu:22.04"}, "docker://"),
        ({"runtime": "apptainer", "image": "images/orch.sif"}, "absolute path"),
        ({"runtime": "none", "image": "/images/orch.sif"}, "runtime none"),
        ({"runtime": "pyxis", "image": "orch:cpu", "binds": ["data:/data"]}, "absolute paths"),
        ({"runtime": "docker", "image": "orch:cpu"}, "remote.container.runtime"),
    ],
)
def test_a_wrong_container_section_is_one_line(tmp_path: Path, container: object, words: str) -> None:
    profile = yaml.safe_load((REPO / "conf" / "clusters" / "university-example.yaml").read_text())
    profile["remote"]["container"] = container
    path = tmp_path / "conf" / "clusters" / "bad.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(profile))
    assert_one_error_line(run_orch(["validate", str(path)], cwd=tmp_path), str(path), "remote.container", words)


def test_container_null_is_no_container() -> None:
    assert RemoteSettings.model_validate({"workdir": "/w", "container": None}).container == ContainerSettings()


def _refusal(remote: RemoteSettings, monkeypatch: pytest.MonkeyPatch, path: Path) -> str | None:
    monkeypatch.setenv("PATH", str(path))
    try:
        check_runtime(remote, SlurmClient(env={}))
    except RemoteError as exc:
        assert exc.key == "remote.container.runtime" and len(exc.one_line().splitlines()) == 1
        return exc.one_line()
    return None


@pytest.mark.parametrize("program", ["apptainer", "singularity"])
def test_apptainer_is_looked_for_on_the_login_nodes_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, program: str) -> None:
    remote = _remote(CONTAINERS["apptainer"])
    refused = _refusal(remote, monkeypatch, tmp_path / "bin")
    assert refused is not None and "neither apptainer nor singularity" in refused and "fix:" in refused
    _tool(tmp_path / "bin", program, "exit 0")
    assert _refusal(remote, monkeypatch, tmp_path / "bin") is None
    assert apptainer_program(remote) == program  # what the job script's command runs


def test_apptainer_on_the_path_remote_env_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tool(tmp_path / "site", "apptainer", "exit 0")
    remote = RemoteSettings(workdir="/w", env={"PATH": f"{tmp_path / 'site'}:/usr/bin"}, container=CONTAINERS["apptainer"])
    assert _refusal(remote, monkeypatch, tmp_path / "empty") is None


def test_pyxis_needs_srun_s_container_image_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = _remote(CONTAINERS["pyxis"])
    _tool(tmp_path / "bin", "srun", 'echo "Usage: srun [OPTIONS(0)... [executable(0) [args(0)...]]]"')
    refused = _refusal(remote, monkeypatch, tmp_path / "bin")
    assert refused is not None and "no --container-image option" in refused
    _tool(tmp_path / "bin", "srun", 'echo "      --container-image=[USER@][REGISTRY#]IMAGE[:TAG]|PATH"')
    assert _refusal(remote, monkeypatch, tmp_path / "bin") is None


def test_no_container_asks_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No srun and no apptainer on PATH: nothing is run, nothing refused.
    assert _refusal(_remote(CONTAINERS["none"]), monkeypatch, tmp_path) is None


def test_image_tags_record_reference_and_file_digest(tmp_path: Path) -> None:
    import hashlib

    image = tmp_path / "orch.sif"
    image.write_bytes(b"an image")
    assert image_tags(ContainerSettings(runtime="apptainer", image=str(image))) == {
        "orch.container.runtime": "apptainer",
        "orch.container.image": str(image),
        "orch.container.image_file_sha256": hashlib.sha256(b"an image").hexdigest(),
    }
    assert image_tags(ContainerSettings(runtime="pyxis", image="nvcr.io#nvidia/pytorch:24.01")) == {
        "orch.container.runtime": "pyxis",
        "orch.container.image": "nvcr.io#nvidia/pytorch:24.01",
    }
    assert image_tags(ContainerSettings()) == {}


def test_the_parent_run_carries_the_image_tags(tmp_path: Path) -> None:
    from orchestrator.kernel.config.loading import load_sweep
    from orchestrator.kernel.tracking_layout import SweepIdentity
    from orchestrator.tracking.sweep_run import open_sweep_run

    class Client:  # the TrackingClient calls open_sweep_run makes, recorded
        started: dict[str, str] = {}

        def ensure_experiment(self, name: str) -> str:
            return "1"

        def start_run(self, experiment_id: str, name: str, tags: dict[str, str], params: dict[str, str]) -> str:
            Client.started = tags
            return "run-1"

        def log_text(self, run_id: str, text: str, path: str) -> None:
            pass

    resolved = load_sweep(REPO / "conf" / "sweeps" / "avae-slurm-tiny.yaml")
    identity = SweepIdentity("s-1", "tiny", "avae", "avae", "abc", False, "university")
    tags = image_tags(ContainerSettings(runtime="pyxis", image="orch:cpu"))
    assert open_sweep_run(Client(), resolved, identity, 1, container_tags=tags) == ("run-1", "1")  # type: ignore[arg-type]
    assert Client.started["orch.container.image"] == "orch:cpu" and Client.started["orch.kind"] == "sweep"


def test_without_scontrol_the_job_asks_the_batch_script_to_requeue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In an image (no scontrol) submitit's requeue becomes a request file the batch script's teardown acts on;
    where scontrol is on PATH, submitit's own requeue stays."""
    from submitit.slurm.slurm import SlurmJobEnvironment

    from cluster.node.job_entry import REQUEUE_REQUEST_ENV, requeue_through_the_batch_script

    own = SlurmJobEnvironment._requeue
    monkeypatch.setattr(SlurmJobEnvironment, "_requeue", own)  # put back after the test
    marker = tmp_path / "requeue.7.0"
    monkeypatch.setenv(REQUEUE_REQUEST_ENV, str(marker))
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    _tool(tmp_path, "scontrol", "exit 0")
    monkeypatch.setenv("PATH", str(tmp_path))
    requeue_through_the_batch_script()
    assert SlurmJobEnvironment._requeue is own
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    requeue_through_the_batch_script()
    SlurmJobEnvironment()._requeue(1)
    assert marker.exists()
    assert 'if [ -e "$ORCH_REQUEUE_REQUEST" ]; then' in (GOLDEN / "job_apptainer.sh").read_text()
