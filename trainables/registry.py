"""How orch finds a project's trainable, in any of its three forms (docs/trainables.md):

- a registered name: the `orch.trainables` entry-point group of any installed package (the built-in
  research projects register there too, trainables/specs.py);
- an import path `module:attribute`: a `ray.tune.Trainable` subclass, or a Ray Tune function trainable
  `def train(config)`, written against plain Ray Tune;
- a command (`command:` in the project file): an existing script, run once per trial (trainables/command.py).

Importing this module imports neither torch nor ray: specs load config models and trainables lazily
from their "module:attribute" paths, and only the import path form imports the user's module.
"""

from __future__ import annotations

import importlib
import inspect
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pydantic

__all__ = [
    "ENTRY_POINT_GROUP",
    "TrainableError",
    "TrainableSpec",
    "UnknownTrainableError",
    "available_trainables",
    "command_spec",
    "get_trainable_spec",
    "placeholders",
    "resolve_trainable",
]

ENTRY_POINT_GROUP = "orch.trainables"
Kind = Literal["class", "function", "command"]


class TrainableError(ValueError):
    """A trainable that cannot be used: which project key names it, what is wrong, what to do."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        super().__init__(f"{key}: {problem}; fix: {fix}")
        self.key, self.problem, self.fix = key, problem, fix


class UnknownTrainableError(KeyError):
    """Raised for a trainable name that is not registered; the message lists the valid ones."""

    def __init__(self, name: str, valid: list[str]) -> None:
        self.name = name
        self.valid = valid
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown trainable {self.name!r}; valid trainables: {', '.join(self.valid)}"


def _load(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


@dataclass(frozen=True)
class TrainableSpec:
    """One trainable and what orch may know of it before it runs.

    ``metrics`` lists metric names reported every step; ``metric_patterns`` are regular expressions
    for families whose names depend on the config (``val_loss_rot<deg>``). A spec that declares no
    metrics cannot have a sweep's metric checked (the project file's ``metrics:`` declares them).
    """

    name: str
    description: str = ""
    kind: Kind | None = None  # None: not known until the trainable is loaded
    config_module: str | None = None  # "module:attribute" of a pydantic model (a torch-free import)
    trainable_module: str | None = None  # "module:attribute" of the class or function
    command: tuple[str, ...] = ()  # the command form: argv with {hyperparameter} placeholders
    metrics: tuple[str, ...] = ()
    metric_patterns: tuple[str, ...] = ()
    config_model_object: Any = field(default=None, compare=False, repr=False)

    def config_model(self) -> type[pydantic.BaseModel] | None:
        """The pydantic model that validates this trainable's config, when it has one."""
        if self.config_model_object is not None:
            return self.config_model_object
        return _load(self.config_module) if self.config_module else None

    def trainable(self) -> Any:
        """What Ray Tune runs: the class, the function, or (command form) a function trainable running the command."""
        if self.kind == "command":
            from trainables.command import command_trainable

            return command_trainable(self.command)
        if self.trainable_module is None:
            raise TrainableError("trainable", f"{self.name} names nothing to run", "give the project a trainable or a command")
        return _load(self.trainable_module)

    trainable_class = trainable

    @property
    def declares_metrics(self) -> bool:
        return bool(self.metrics or self.metric_patterns)

    def reports_metric(self, metric: str) -> bool:
        """Whether ``metric`` is a name this trainable reports (exact name or family)."""
        if metric in self.metrics:
            return True
        return any(re.fullmatch(pattern, metric) for pattern in self.metric_patterns)

    def with_declarations(self, metrics: Sequence[str] = (), config_model: str | None = None) -> TrainableSpec:
        """The spec with what a project file declares added: more metrics, its own config model."""
        return replace(
            self,
            metrics=tuple(dict.fromkeys([*self.metrics, *metrics])),
            config_module=config_model or self.config_module,
            config_model_object=None if config_model else self.config_model_object,
        )


# ---------------------------------------------------------------------------- registered names
def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}


def available_trainables() -> list[str]:
    """Registered trainable names, sorted."""
    return sorted(_entry_points())


def get_trainable_spec(name: str) -> TrainableSpec:
    """The spec registered under ``name``; :class:`UnknownTrainableError` otherwise."""
    point = _entry_points().get(name)
    if point is None:
        raise UnknownTrainableError(name, available_trainables())
    try:
        loaded = point.load()
    except Exception as exc:  # an installed package whose registration is broken
        raise TrainableError(
            "trainable",
            f"the trainable registered as {name!r} ({point.value}) does not load: {_first_line(exc)}",
            "reinstall or fix the package that registers it",
        ) from None
    return spec_of(loaded, name, point.value)


# ---------------------------------------------------------------------------- import paths
def resolve_trainable(ref: str) -> TrainableSpec:
    """A project's `trainable:`: an import path `module:attribute` (imported now) or a registered name."""
    if ":" not in ref:
        return get_trainable_spec(ref)
    module_name, _, attribute = ref.partition(":")
    if not module_name or not attribute or not all(part.isidentifier() for part in [*module_name.split("."), attribute]):
        raise TrainableError("trainable", f"{ref!r} is not an import path", "write it as package.module:Attribute")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TrainableError(
            "trainable",
            f"cannot import {module_name} ({exc})",
            "make the module importable from the workspace root (or install it), then check the spelling",
        ) from None
    except Exception as exc:  # the module itself raised while importing
        raise TrainableError(
            "trainable",
            f"importing {module_name} raised {type(exc).__name__}: {_first_line(exc)}",
            f"fix {module_name} so that it imports",
        ) from None
    if not hasattr(module, attribute):
        names = sorted(n for n in vars(module) if not n.startswith("_"))[:12]
        raise TrainableError(
            "trainable",
            f"module {module_name} has no attribute {attribute!r}",
            f"use one of: {', '.join(names) or 'nothing public'}",
        )
    return spec_of(getattr(module, attribute), ref, ref)


def spec_of(obj: Any, name: str, path: str) -> TrainableSpec:
    """The spec of a loaded object: a TrainableSpec, a ray.tune.Trainable subclass, or a function trainable."""
    if isinstance(obj, TrainableSpec):
        return obj
    if inspect.isclass(obj):
        if not _is_tune_trainable(obj):
            raise TrainableError(
                "trainable",
                f"{path} is a class but not a ray.tune.Trainable",
                "subclass ray.tune.Trainable (setup/step/save_checkpoint/load_checkpoint), or name a function",
            )
        model = getattr(obj, "config_model", None)  # a class may carry its pydantic config model
        return TrainableSpec(
            name=name, kind="class", trainable_module=path, config_model_object=model if _is_pydantic_model(model) else None
        )
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        _check_function_signature(obj, path)
        return TrainableSpec(name=name, kind="function", trainable_module=path)
    raise TrainableError(
        "trainable",
        f"{path} is a {type(obj).__name__}, not a trainable",
        "name a ray.tune.Trainable subclass or a function def train(config)",
    )


def _is_tune_trainable(cls: type) -> bool:
    """A subclass of ray.tune.Trainable, found without importing ray."""
    return any(base.__name__ == "Trainable" and base.__module__.startswith("ray.") for base in cls.__mro__[1:])


def _is_pydantic_model(obj: Any) -> bool:
    return inspect.isclass(obj) and any(
        base.__name__ == "BaseModel" and base.__module__.startswith("pydantic") for base in obj.__mro__
    )


def _check_function_signature(function: Any, path: str) -> None:
    """Ray Tune calls a function trainable with one argument, the trial's config."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return
    required = [p for p in parameters if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_one = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters)
    if len(required) > 1 or not takes_one:
        shown = f"{function.__name__}({', '.join(p.name for p in parameters)})"
        raise TrainableError(
            "trainable",
            f"{path} is {shown}; Ray Tune calls a function trainable with one argument, the trial's config",
            f"define it as def {function.__name__}(config): ...",
        )


def config_model_of(path: str) -> type[pydantic.BaseModel]:
    """A project's `config_model:` import path, checked to be a pydantic model."""
    try:
        model = _load(path)
    except Exception as exc:
        raise TrainableError(
            "config_model", f"cannot load {path} ({_first_line(exc)})", "name a pydantic model as package.module:Model"
        ) from None
    if not _is_pydantic_model(model):
        raise TrainableError("config_model", f"{path} is not a pydantic model", "subclass pydantic.BaseModel")
    return model


# ---------------------------------------------------------------------------- commands
def command_argv(command: str | Sequence[str]) -> tuple[str, ...]:
    """A project's `command:` as an argument list (a string is split as a shell would, without running one)."""
    import shlex

    return tuple(shlex.split(command)) if isinstance(command, str) else tuple(command)


def placeholders(command: Iterable[str]) -> list[str]:
    """The hyperparameters a command names, `{lr}` or `{optimizer.lr}`, in order."""
    names: list[str] = []
    for part in command:
        for _, name, _, _ in string.Formatter().parse(part):
            if name is not None and name not in names:
                names.append(name)
    return names


def command_spec(command: str | Sequence[str], name: str = "command") -> TrainableSpec:
    argv = command_argv(command)
    if not argv:
        raise TrainableError("command", "the command is empty", "write the command that trains, e.g. python train.py --lr {lr}")
    try:
        placeholders(argv)
    except ValueError as exc:
        raise TrainableError(
            "command",
            f"the command's placeholders do not parse ({exc})",
            "write hyperparameters as {name}; double the braces of a literal one: {{ }}",
        ) from None
    return TrainableSpec(name=name, kind="command", command=argv)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
