"""Read YAML files under conf/ into typed models, with one clear error per problem.

The conf/ layout is fixed: `<root>/projects/<name>.yaml`, `<root>/sweeps/<name>.yaml`,
`<root>/clusters/<name>.yaml`. A sweep names its project; the project names its
trainable; both are resolved and cross-checked here, before anything runs.
"""

from __future__ import annotations

import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.kernel.config.models import (
    BACKENDS,
    ClusterProfile,
    LocalProfile,
    ProjectConfig,
    SweepConfig,
    profile_class,
)
from orchestrator.kernel.config.search_space import (
    SearchSpace,
    SearchSpaceError,
    count_trials,
    deep_merge,
    flatten,
    parse_search_space,
)
from orchestrator.kernel.config.workspace import conf_root_of, make_importable, workspace_of
from orchestrator.kernel.errors import ConfigError
from trainables.registry import TrainableSpec

KINDS = ("projects", "sweeps", "clusters")
DEFAULT_CLUSTER = "local"


@dataclass(frozen=True)
class ResolvedSweep:
    """A sweep with its project, trainable and search space, all checked together."""

    file: Path
    sweep: SweepConfig
    project_file: Path
    project: ProjectConfig
    space: SearchSpace
    base_config: dict[str, Any]
    trainable_metrics: tuple[str, ...]
    spec: TrainableSpec
    workspace: Path  # the workspace root: project modules import from it, commands run in it

    @property
    def num_trials(self) -> int:
        return count_trials(self.space, self.sweep.num_samples)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(path, "", "file not found", "check the path (configs live under conf/)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, "", "not a UTF-8 text file", "save it as UTF-8 YAML") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(path, where, f"malformed YAML: {problem}", "fix the YAML syntax there") from None
    if data is None:
        raise ConfigError(path, "", "the file is empty", "write the configuration as a YAML mapping")
    if not isinstance(data, dict):
        raise ConfigError(path, "", f"expected a YAML mapping at the top, got {type(data).__name__}", "write key: value pairs")
    return data


def parse_model(model: type[BaseModel], data: dict[str, Any], file: Path, prefix: str = "") -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _translate(exc, model, file, prefix) from None


def _translate(exc: ValidationError, model: type[BaseModel], file: Path, prefix: str) -> ConfigError:
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    key = prefix + ".".join(loc)
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    if error["type"] == "extra_forbidden":
        valid = _field_names(model, loc[:-1])
        return ConfigError(file, key, f"unknown key '{loc[-1]}'{more}", f"use one of: {', '.join(valid)}")
    if error["type"] == "missing":
        return ConfigError(file, key, f"required key is missing{more}", f"add '{loc[-1]}:' to the file")
    given = error.get("input")
    shown = repr(given) if not isinstance(given, dict) else "a mapping"
    fix = str(error.get("ctx", {}).get("fix", "correct the value"))  # a validator that knows the fix says it
    return ConfigError(file, key, f"{error['msg']} (got {shown}){more}", fix)


def _field_names(model: type[BaseModel], loc: list[str]) -> list[str]:
    """Valid keys of the (nested) model at `loc`, for 'unknown key' messages."""
    current: Any = model
    for part in loc:
        field = current.model_fields.get(part) if _is_model(current) else None
        if field is None:
            return []
        current = next((arg for arg in _flat_args(field.annotation) if _is_model(arg)), None)
        if current is None:
            return []
    return sorted(current.model_fields) if _is_model(current) else []


def _flat_args(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    return [annotation] if not args else [a for arg in args for a in _flat_args(arg)]


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def load_project(path: Path) -> ProjectConfig:
    project = parse_model(ProjectConfig, read_yaml(path), path)
    spec = _trainable_spec(project, path)
    model = spec.config_model()
    if model is not None:
        parse_model(model, project.defaults, path, prefix="defaults.")
    return project


def _trainable_spec(project: ProjectConfig, path: Path) -> TrainableSpec:
    """The project's trainable in its form (registered name, import path, command), with what the project
    file declares; imported now from the workspace, so a path that does not import is caught here."""
    from trainables.registry import (
        TrainableError,
        UnknownTrainableError,
        command_spec,
        config_model_of,
        resolve_trainable,
    )

    make_importable(workspace_of(conf_root_of(path)))
    try:
        spec = command_spec(project.command) if project.command is not None else resolve_trainable(str(project.trainable))
        if project.config_model:
            config_model_of(project.config_model)
        return spec.with_declarations(project.metrics, project.config_model)
    except UnknownTrainableError as exc:
        raise ConfigError(
            path,
            "trainable",
            f"unknown trainable '{project.trainable}'",
            f"use one of: {', '.join(exc.valid)}, or an import path package.module:Attribute",
        ) from None
    except TrainableError as exc:
        raise ConfigError(path, exc.key, exc.problem, exc.fix) from None


def _check_config(
    spec: TrainableSpec, project: ProjectConfig, project_file: Path, path: Path, space: SearchSpace, base_config: dict[str, Any]
) -> None:
    """Hyperparameters against the trainable's typed config when it has one (every sampler's extreme values);
    otherwise the command's placeholders against the hyperparameters there are."""
    from trainables.registry import placeholders

    config_model = spec.config_model()
    if config_model is not None:
        parse_model(config_model, project.defaults, project_file, prefix="defaults.")
        parse_model(config_model, base_config, path, prefix="search_space.")
        for _sampler_path, probe in space.probe_configs():
            try:
                config_model.model_validate(deep_merge(project.defaults, probe))
            except ValidationError as exc:
                raise _translate(exc, config_model, path, "search_space.") from None
    if spec.kind == "command":
        known = set(flatten(deep_merge(project.defaults, space.constant_config()))) | set(space.sampled_paths())
        for name in placeholders(spec.command):
            if name not in known:
                raise ConfigError(
                    project_file,
                    "command",
                    f"placeholder {{{name}}} names no hyperparameter",
                    f"use one of: {', '.join(sorted(known)) or 'none (add defaults: or a search_space)'}",
                )


def load_sweep(path: Path) -> ResolvedSweep:
    sweep: SweepConfig = parse_model(SweepConfig, read_yaml(path), path)
    try:
        space = parse_search_space(sweep.search_space)
    except SearchSpaceError as exc:
        raise ConfigError(path, exc.key, exc.problem, exc.fix) from None

    project_file = conf_root_of(path) / "projects" / f"{sweep.project}.yaml"
    if not project_file.is_file():
        known = sorted(p.stem for p in project_file.parent.glob("*.yaml"))
        raise ConfigError(
            path,
            "project",
            f"unknown project '{sweep.project}' (no {project_file})",
            f"use one of: {', '.join(known) or 'none found'}",
        )
    project = parse_model(ProjectConfig, read_yaml(project_file), project_file)
    spec = _trainable_spec(project, project_file)
    base_config = deep_merge(project.defaults, space.constant_config())
    _check_config(spec, project, project_file, path, space, base_config)
    if not spec.declares_metrics:
        raise ConfigError(
            project_file,
            "metrics",
            f"project '{project.name}' declares no metrics, so the sweep's metric '{sweep.metric}' cannot be checked",
            f"list what the trainable reports every step, e.g. metrics: [{sweep.metric}]",
        )
    if not spec.reports_metric(sweep.metric):
        raise ConfigError(
            path,
            "metric",
            f"trainable '{project.runs}' does not report '{sweep.metric}'",
            f"use one of: {', '.join(spec.metrics)}",
        )
    return ResolvedSweep(
        path, sweep, project_file, project, space, base_config, spec.metrics, spec, workspace_of(conf_root_of(path))
    )


def cluster_file(name_or_path: str, conf_root: Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    return conf_root / "clusters" / f"{name_or_path}.yaml"


def parse_cluster(data: dict[str, Any], file: Path) -> ClusterProfile:
    """A cluster profile of the kind its keys say: local, SLURM over ssh, or SLURM over slurmrestd."""
    backend = data.get("backend", "local")
    if backend not in BACKENDS:
        raise ConfigError(file, "backend", f"unknown backend {backend!r}", f"use one of: {', '.join(BACKENDS)}")
    profile: ClusterProfile = parse_model(profile_class(data), data, file)
    return profile


def find_cluster(name_or_path: str, conf: Path | None) -> tuple[ClusterProfile, Path]:
    """A profile by file path, or by name in the workspace's conf/clusters/ (`conf`, else found from the
    current directory upward): the profile and its file."""
    from orchestrator.kernel.config.workspace import conf_root

    if Path(name_or_path).suffix in (".yaml", ".yml"):
        return load_cluster(name_or_path, Path(name_or_path).parent), Path(name_or_path)
    root = conf_root(conf)
    return load_cluster(name_or_path, root), cluster_file(name_or_path, root)


def load_cluster(name_or_path: str, conf_root: Path) -> ClusterProfile:
    path = cluster_file(name_or_path, conf_root)
    if not path.is_file() and name_or_path == DEFAULT_CLUSTER:
        return LocalProfile(name=DEFAULT_CLUSTER)  # this machine, sized to what it has: no file needed
    if not path.is_file() and path.parent.is_dir():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(path, "", f"no cluster profile '{name_or_path}'", f"use one of: {', '.join(known) or 'none found'}")
    return parse_cluster(expand_environment(read_yaml(path), path), path)


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_environment(node: Any, file: Path, key: str = "") -> Any:
    """Replace `${NAME}` in a cluster profile's strings by environment variables (paths, hosts).

    Secrets never go in profiles: credentials come from the standard chains (ssh agent,
    boto3, MLflow's environment variables)."""
    if isinstance(node, dict):
        return {k: expand_environment(v, file, f"{key}.{k}" if key else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_environment(v, file, f"{key}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str):

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(file, key, f"environment variable {name} is not set", f"export {name}=... or write the value")
            return os.environ[name]

        return _ENV_REFERENCE.sub(value, node)
    return node


def validate_file(path: Path) -> tuple[str, list[str]]:
    """Validate one file by the folder it lives in; a short description and warnings (what its trainable's
    form cannot do)."""
    kind = path.resolve().parent.name
    if kind == "sweeps":
        resolved = load_sweep(path)
        return (
            f"sweep '{resolved.sweep.name}' of project '{resolved.project.name}': {resolved.num_trials} trials",
            form_warnings(resolved.spec),
        )
    if kind == "projects":
        project = load_project(path)
        return f"project '{project.name}' ({project.runs})", form_warnings(_trainable_spec(project, path))
    if kind == "clusters":
        cluster = parse_cluster(expand_environment(read_yaml(path), path), path)
        return f"cluster profile '{cluster.name}' ({cluster.backend})", []
    conf_root_of(path)  # says where it looked
    raise ConfigError(
        path, "", f"cannot tell what kind of config this is (folder '{kind}')", f"put it under conf/{{{','.join(KINDS)}}}/"
    )


def form_warnings(spec: TrainableSpec) -> list[str]:
    """What a trainable's form leaves to the trainable itself (docs/trainables.md)."""
    if spec.kind == "command":
        return [
            "a command checkpoints only by writing to $ORCH_CHECKPOINT_DIR (and on SIGUSR1 when SLURM is about to "
            "preempt it); one that never does restarts from scratch after a preemption or a time limit"
        ]
    if spec.kind == "function":
        return [
            "a function trainable checkpoints only when it reports one (tune.report(metrics, checkpoint=...)); on SLURM's "
            "signal it is asked through $ORCH_CHECKPOINT_NOW_FILE, else it resumes from its last checkpoint"
        ]
    return []


def sweep_files_hash(resolved: ResolvedSweep) -> str:
    """SHA-256 of a sweep's file and its project's file: equal when neither changed."""
    import hashlib

    digest = hashlib.sha256()
    for path in (Path(resolved.file), Path(resolved.project_file)):
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
