"""Typed models of the YAML files under conf/: projects, sweeps, clusters.

Every model rejects unknown keys. Cross-file checks (does the project exist, does
the trainable accept these hyperparameters, can the cluster give these resources)
live in `orchestrator.kernel.config.loading`, which knows about files.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _single_line(value: str) -> str:
    """Values that end up in #SBATCH lines, where a newline would start a new shell line."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters (newlines, tabs)")
    return value


class ProjectConfig(StrictModel):
    """A research project: what it runs (a trainable, or a command) and its default hyperparameters."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    trainable: str | None = Field(
        default=None,
        description="a registered name, or an import path module:Attribute "
        "(a ray.tune.Trainable subclass or a function trainable def train(config))",
    )
    command: str | list[str] | None = Field(
        default=None,
        description="a script run once per trial, with {hyperparameter} placeholders, e.g. python train.py --lr {lr}",
    )
    config_model: str | None = Field(default=None, description="module:Model, a pydantic model that validates the config")
    metrics: list[str] = Field(
        default_factory=list, description="what the trainable reports every step (the sweep's metric is checked against it)"
    )
    experiment: str | None = Field(default=None, description="MLflow experiment name; defaults to the project name")
    defaults: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_thing_to_run(self) -> ProjectConfig:
        if (self.trainable is None) == (self.command is None):
            raise ValueError("give either 'trainable:' or 'command:' (exactly one)")
        return self

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name

    @property
    def runs(self) -> str:
        """What the project runs, in a few words: its trainable, or `command: <program>`."""
        if self.trainable is not None:
            return self.trainable
        program = self.command.split()[0] if isinstance(self.command, str) else (self.command or ["?"])[0]
        return f"command: {program}"


class ResourcesConfig(StrictModel):
    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)


class SchedulerConfig(StrictModel):
    """Trial scheduler: `fifo` runs every trial to its end, `asha` stops poor trials early."""

    type: Literal["fifo", "asha"] = "fifo"
    grace_period_epochs: int = Field(default=1, ge=1)
    reduction_factor: float = Field(default=2.0, gt=1)


class SearchConfig(StrictModel):
    """Search algorithm: `random` samples (and expands grids); seed makes sampling repeatable."""

    algorithm: Literal["random"] = "random"
    seed: int | None = None


class CheckpointPolicy(StrictModel):
    every_epochs: int = Field(default=1, ge=1)
    keep: int = Field(default=2, ge=1)


class SweepConfig(StrictModel):
    """A sweep: a project, a search space, the metric to optimise and how to run trials."""

    name: str = Field(pattern=NAME_PATTERN)
    project: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    metric: str
    mode: Literal["min", "max"]
    num_samples: int = Field(default=1, ge=1, le=100_000)
    search_space: dict[str, Any]
    search: SearchConfig = SearchConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    resources_per_trial: ResourcesConfig = ResourcesConfig()
    max_concurrent_trials: int | None = Field(default=None, ge=1)
    checkpoint: CheckpointPolicy = CheckpointPolicy()
    max_failures: int = Field(default=0, ge=0, description="retries of a failed trial from its last checkpoint")


class TrackingConfig(StrictModel):
    """Where MLflow records runs. Unset = the embedded default under .orch/."""

    uri: str | None = None
    artifact_location: str | None = None
    nodes_reach_server: bool = Field(
        default=True,
        description="false: compute nodes never contact MLflow; runs, metrics and artifacts spool to the "
        "sweep folder on the shared filesystem and the agent (or `orch tracking deliver`) delivers them",
    )


class SshLogin(StrictModel):
    """How the laptop reaches the cluster's login node (the `ssh` binary, argument lists)."""

    host: str = Field(min_length=1)
    user: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535, description="default: ssh's own (22 or the ssh_config's)")
    identity_file: str | None = None
    ssh_config: str | None = Field(default=None, description="an ssh_config file passed with -F")
    jump_host: str | None = Field(default=None, description="ProxyJump host, e.g. user@gateway")
    control_persist_s: int = Field(default=600, ge=0, description="reuse one (MFA) login this long; 0 disables")
    connect_timeout_s: int = Field(default=10, ge=1)
    options: dict[str, str] = Field(default_factory=dict, description="extra ssh -o options")


class SlurmRestLogin(StrictModel):
    """How the laptop reaches a site's slurmrestd (REST API, JWT) when there is no ssh to a login node."""

    url: str = Field(pattern=r"^https?://[^\s/]+", description="slurmrestd's base URL, e.g. https://slurm.example.org:6820")
    user: str = Field(min_length=1, description="the cluster user the token was made for (X-SLURM-USER-NAME)")
    token_file: str | None = Field(default=None, description="a file holding the JWT from `scontrol token`")
    token_env: str = Field(default="SLURM_JWT", description="else this environment variable holds it")
    api_version: str = Field(default="v0.0.38", pattern=r"^v\d+\.\d+\.\d+$")
    submit_wait_s: int = Field(default=120, ge=0, description="how long `orch submit` waits for its submit job to run")
    timeout_s: float = Field(default=30, gt=0)


_MOUNT_OPTIONS = ("ro", "rw")


class ContainerSettings(StrictModel):
    """The image a sweep's jobs run in, on every node of the allocation (`remote.container`).

    `apptainer` runs `apptainer exec [--nv] --bind ... IMAGE` around the job's Python; `pyxis` asks srun for
    the image (`--container-image`, `--container-mounts`). The job's environment (`remote.env`, PYTHONPATH to
    the code snapshot) reaches the Python inside: Apptainer passes the host environment unless told
    `--cleanenv`, Pyxis passes the task's. `remote.workdir` (code snapshot, sweep folder, checkpoints) is
    always bound at its own path; `binds` adds data roots and anything else the trials read.
    """

    runtime: Literal["apptainer", "pyxis", "none"] = "none"
    image: str | None = Field(
        default=None,
        description="apptainer: a .sif on the shared filesystem or docker://REF; pyxis: a .sqsh or [REGISTRY#]IMAGE[:TAG]",
    )
    binds: list[str] = Field(
        default_factory=list,
        description="HOST[:CONTAINER[:ro|rw]] mounts beyond remote.workdir (always bound): data roots, a checkpoint store",
    )
    gpu: bool = Field(default=True, description="apptainer: --nv (pyxis: enroot's NVIDIA hook exposes the GPUs itself)")
    python: str = Field(default="/opt/venv/bin/python", description="the Python inside the image (the Dockerfile's venv)")
    extra_args: list[str] = Field(
        default_factory=list, description="more options: apptainer exec's (before the image) or srun's (pyxis)"
    )

    @field_validator("image", "python")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return None if value is None else _single_line(value)

    @field_validator("binds")
    @classmethod
    def _mounts(cls, binds: list[str]) -> list[str]:
        for bind in binds:
            _single_line(bind)
            parts = bind.split(":")
            if "," in bind or not 1 <= len(parts) <= 3 or not all(p.startswith("/") for p in parts[:2]):
                raise ValueError(f"{bind!r} is not HOST[:CONTAINER[:ro|rw]] with absolute paths and no commas")
            if len(parts) == 3 and parts[2] not in _MOUNT_OPTIONS:
                raise ValueError(f"{bind!r}: the mount option must be one of {', '.join(_MOUNT_OPTIONS)}")
        return binds

    @field_validator("extra_args")
    @classmethod
    def _single_line_args(cls, args: list[str]) -> list[str]:
        return [_single_line(arg) for arg in args]

    @model_validator(mode="after")
    def _image_fits_runtime(self) -> ContainerSettings:
        problem = image_problem(self.runtime, self.image)
        if problem is not None:
            fix = (
                "give runtime and image that match: apptainer with /path/orch.sif or docker://REF, "
                "pyxis with /path/orch.sqsh or REGISTRY#IMAGE:TAG, or runtime none without an image"
            )
            raise PydanticCustomError("container_image", problem, {"fix": fix})
        return self


def image_problem(runtime: str, image: str | None) -> str | None:
    """Why `image` cannot run under `runtime` (None: it can)."""
    if runtime == "none":
        return None if image is None else "an image with runtime none runs nothing in it: set runtime: apptainer or pyxis"
    if not image:
        return f"runtime {runtime} needs an image"
    is_file = image.endswith((".sif", ".sqsh"))
    if is_file and not image.startswith("/"):
        return f"{image!r}: an image file must be an absolute path on the shared filesystem"
    if runtime == "apptainer" and not (image.endswith(".sif") or image.startswith("docker://")):
        return f"{image!r}: apptainer runs a .sif file or a docker://REFERENCE"
    if runtime == "pyxis" and (image.endswith(".sif") or "://" in image):
        return f"{image!r}: pyxis runs an enroot .sqsh file or a [REGISTRY#]IMAGE[:TAG] reference (no scheme)"
    return None


class RemoteSettings(StrictModel):
    """The cluster side: where sweeps are unpacked and how jobs find their Python."""

    workdir: str = Field(min_length=1, description="per-sweep folders are created under it (shared filesystem)")
    python: str = Field(default="python3", description="the Python (with this project's dependencies) that runs jobs")
    setup: list[str] = Field(default_factory=list, description="shell lines run before each job: module load, venv")
    env: dict[str, str] = Field(default_factory=dict, description="environment for SLURM commands and jobs")
    container: ContainerSettings = Field(default_factory=ContainerSettings, description="the image every job runs in")
    untracked_files: Literal["refuse", "warn", "include"] = "warn"

    @field_validator("workdir", "python")
    @classmethod
    def _no_control_characters(cls, value: str) -> str:
        return _single_line(value)

    @field_validator("container", mode="before")
    @classmethod
    def _container_section(cls, value: Any) -> Any:
        if value is None:  # `container: null`, as profiles wrote before the section existed
            return {}
        if isinstance(value, str):  # the old placeholder: an image alone, which was never used
            runtime = "pyxis" if value.endswith(".sqsh") else "apptainer"
            raise PydanticCustomError(
                "container_section",
                "an image alone is no longer accepted (it was never used): the container is a section",
                {"fix": f"write `container: {{runtime: {runtime}, image: {value}}}` (see conf/clusters/university-example.yaml)"},
            )
        return value


class SlurmSettings(StrictModel):
    """What every job of a sweep asks SLURM for."""

    partition: str = Field(min_length=1)
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    nodes: int = Field(default=1, ge=1, description="nodes per job; Ray spans them")
    gpus_per_node: int = Field(default=1, ge=0)
    gpu_type: str | None = None
    cpus_per_gpu: int = Field(default=4, ge=1)
    cpus_per_node: int | None = Field(default=None, ge=1, description="for CPU-only jobs (gpus_per_node: 0)")
    mem_per_gpu_gb: float = Field(default=16, gt=0)
    time_limit_min: int = Field(default=60, ge=1)
    signal_lead_s: int = Field(default=120, ge=1, description="USR2 this long before the time limit or preemption")
    max_requeues: int = Field(default=5, ge=0)
    fit_time_limit: bool = Field(
        default=False,
        description="probe shorter limits with sbatch --test-only; take the one "
        "that starts earliest (backfill), more requeues carry the rest",
    )
    min_time_limit_min: int = Field(default=15, ge=1, description="the shortest limit fit_time_limit tries")
    layout: Literal["allocation", "array"] = Field(
        default="allocation", description="allocation: one job per sweep; array: trials split into shards as array tasks"
    )
    shards: int = Field(default=1, ge=1, description="array tasks per sweep with layout: array")

    @field_validator("partition", "account", "qos", "constraint", "gpu_type")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        return None if value is None else _single_line(value)


class ProjectBudgetConfig(StrictModel):
    """One project's share of the account (queue.projects.NAME)."""

    weight: float = Field(default=1.0, gt=0, description="fair-share weight against the other projects")
    max_concurrent_gpus: int | None = Field(default=None, ge=0)
    gpu_hours_per_week: float | None = Field(default=None, ge=0)


class QueueSettings(StrictModel):
    """The durable queue of a SLURM profile and its agent (which runs on the login node)."""

    store: str = Field(
        default="sqlite:///~/.local/state/orch/queue.db",
        description="sqlite:////local/disk/queue.db (never on a network filesystem) or postgresql://...",
    )
    tick_s: float = Field(default=10.0, gt=0, le=3600, description="seconds between two reconciliations")
    global_max_gpus: int | None = Field(default=None, ge=0, description="GPUs the whole account may hold at once")
    aging_per_hour: float = Field(default=1.0, ge=0, description="priority a waiting sweep gains per hour waited")
    projects: dict[str, ProjectBudgetConfig] = Field(default_factory=dict)
    agent_dir: str = Field(default="~/.local/state/orch", description="agent pid file and log, on the login node's local disk")
    agent_as_job: bool = Field(
        default=False,
        description="run the agent as a small self-requeuing CPU SLURM job (for "
        "clusters that kill long login-node processes); needs a PostgreSQL store",
    )
    agent_job_partition: str | None = Field(default=None, description="default: slurm.partition")
    agent_job_time_min: int = Field(default=60, ge=2, description="time limit of each agent job; it requeues itself before it")
    agent_job_run_s: int | None = Field(
        default=None,
        ge=5,
        description="how long each agent job runs before requeueing itself (default: its time limit less 2 minutes)",
    )

    @field_validator("agent_job_partition")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        return None if value is None else _single_line(value)


class _ProfileBase(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    tracking: TrackingConfig = TrackingConfig()


class LocalProfile(_ProfileBase):
    """`backend: local`: Ray on this machine, sized to what it has (or to `cpus`/`gpus`)."""

    backend: Literal["local"] = "local"
    cpus: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    gpus: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"


class _SlurmProfileBase(_ProfileBase):
    backend: Literal["slurm"]
    remote: RemoteSettings
    slurm: SlurmSettings
    queue: QueueSettings | None = Field(default=None, description="with it, orch submit queues and `orch agent` submits")


class SshSlurmProfile(_SlurmProfileBase):
    """`backend: slurm` through a login node: over ssh (`login:`), or on it (no `login:`)."""

    login: SshLogin | None = Field(default=None, description="omit to run the SLURM commands on this machine")


class RestSlurmProfile(_SlurmProfileBase):
    """`backend: slurm` through a site's slurmrestd (`rest:`), for sites without ssh to a login node."""

    rest: SlurmRestLogin

    @model_validator(mode="before")
    @classmethod
    def _not_both(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("login") is not None:
            raise ValueError("give either 'login:' (ssh) or 'rest:' (slurmrestd), not both")
        return data


SlurmProfile = SshSlurmProfile | RestSlurmProfile
ClusterProfile = LocalProfile | SshSlurmProfile | RestSlurmProfile
BACKENDS = ("local", "slurm")


def profile_class(data: Any) -> type[LocalProfile] | type[SshSlurmProfile] | type[RestSlurmProfile]:
    """Which kind of profile a mapping is: `backend` (default local), and for SLURM whether it names `rest:`."""
    if not isinstance(data, dict) or data.get("backend", "local") != "slurm":
        return LocalProfile
    return RestSlurmProfile if data.get("rest") is not None else SshSlurmProfile


def parse_profile(data: Any) -> ClusterProfile:
    """A profile from plain data (a manifest's copy, the JSON the laptop sends); pydantic's error if it is not one."""
    return profile_class(data).model_validate(data)


def profile_from_json(text: str) -> ClusterProfile:
    import json

    return parse_profile(json.loads(text))


__all__ = [
    "CheckpointPolicy",
    "BACKENDS",
    "ClusterProfile",
    "LocalProfile",
    "RestSlurmProfile",
    "SlurmProfile",
    "SshSlurmProfile",
    "parse_profile",
    "profile_class",
    "profile_from_json",
    "ProjectBudgetConfig",
    "QueueSettings",
    "RemoteSettings",
    "SlurmRestLogin",
    "SlurmSettings",
    "SshLogin",
    "ProjectConfig",
    "ResourcesConfig",
    "SchedulerConfig",
    "SearchConfig",
    "StrictModel",
    "SweepConfig",
    "TrackingConfig",
]
