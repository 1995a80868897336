"""The sweep search-space syntax: parse, validate, and translate to Ray Tune.

A search space is a nested mapping. A mapping with exactly one key that names a
sampler is a sampled parameter; any other mapping is a namespace of nested keys;
anything else is a constant::

    lr: {loguniform: [1.0e-4, 1.0e-2]}
    latent_dim: {choice: [3, 6]}
    train_mode: {grid: [upright, train_opt]}
    model: {hidden: {randint: [64, 257]}}     # nested key model.hidden
    epochs: 5                                  # constant
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SAMPLERS = ("choice", "grid", "uniform", "loguniform", "randint")


class SearchSpaceError(ValueError):
    """A search-space entry that cannot be sampled; `key` is its dotted path."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key, self.problem, self.fix = key, problem, fix


@dataclass(frozen=True)
class Sampler:
    """One sampled hyperparameter at a dotted `path`."""

    path: str
    kind: str
    args: tuple[Any, ...]

    def representative_values(self) -> list[Any]:
        """Values that bound what the sampler can produce, for type checking."""
        if self.kind in ("choice", "grid"):
            return list(self.args)
        if self.kind == "randint":
            return [self.args[0], self.args[1] - 1]
        return [self.args[0], self.args[1]]

    def to_tune(self) -> Any:
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.args))
        if self.kind == "grid":
            return tune.grid_search(list(self.args))
        if self.kind == "uniform":
            return tune.uniform(*self.args)
        if self.kind == "loguniform":
            return tune.loguniform(*self.args)
        return tune.randint(*self.args)

    def draw(self, rng: Any) -> Any:
        """One value of a random sampler from a numpy `Generator`, as a plain Python value.

        The same distributions as `to_tune`: randint excludes `high`, loguniform is uniform in log space.
        """
        if self.kind in ("choice", "grid"):
            return self.args[int(rng.integers(len(self.args)))]
        low, high = self.args
        if self.kind == "randint":
            return int(rng.integers(low, high))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        return float(rng.uniform(low, high))


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: samplers and constants at dotted paths."""

    samplers: tuple[Sampler, ...]
    constants: tuple[tuple[str, Any], ...]

    @property
    def grid_size(self) -> int:
        return math.prod(len(s.args) for s in self.samplers if s.kind == "grid")

    def sampled_paths(self) -> list[str]:
        return [s.path for s in self.samplers]

    def constant_config(self) -> dict[str, Any]:
        return unflatten(dict(self.constants))

    def probe_configs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(path, nested config) pairs covering each sampler's extreme values."""
        base = dict(self.constants)
        for sampler in self.samplers:
            others = {s.path: s.representative_values()[0] for s in self.samplers if s is not sampler}
            for value in sampler.representative_values():
                yield sampler.path, unflatten({**base, **others, sampler.path: value})

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid samplers ({path: value}), the first sampler varying slowest."""
        grids = [s for s in self.samplers if s.kind == "grid"]
        return [dict(zip((s.path for s in grids), values)) for values in itertools.product(*(s.args for s in grids))]

    def draw_trials(self, num_samples: int, rng: Any) -> list[dict[str, Any]]:
        """The flat {path: value} of every trial: num_samples x the grid, random samplers drawn from `rng`.

        Sample-major like Ray Tune (each sample repeats the whole grid); within a trial the random
        samplers are drawn in declaration order, so a seeded `rng` gives the same trials every time.
        """
        randoms = [s for s in self.samplers if s.kind != "grid"]
        trials = []
        for _ in range(num_samples):
            for point in self.grid_points():
                trials.append({**dict(self.constants), **point, **{s.path: s.draw(rng) for s in randoms}})
        return trials

    def to_tune(self) -> dict[str, Any]:
        """The nested `param_space` for `ray.tune.Tuner`."""
        flat: dict[str, Any] = dict(self.constants)
        flat.update({s.path: s.to_tune() for s in self.samplers})
        return unflatten(flat)


def parse_search_space(raw: Any, *, where: str = "search_space") -> SearchSpace:
    if not isinstance(raw, dict) or not raw:
        raise SearchSpaceError(
            where, "the search space is empty", "add at least one hyperparameter, e.g. lr: {loguniform: [1.0e-4, 1.0e-2]}"
        )
    samplers: list[Sampler] = []
    constants: list[tuple[str, Any]] = []
    for path, value in _walk(raw, prefix="", where=where):
        full = f"{where}.{path}"
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SAMPLERS:
            kind, args = next(iter(value.items()))
            samplers.append(Sampler(path, kind, _check_sampler(full, kind, args)))
        else:
            constants.append((path, value))
    return SearchSpace(tuple(samplers), tuple(constants))


def _walk(node: dict[str, Any], prefix: str, where: str) -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        if not isinstance(key, str) or not key or "." in key:
            raise SearchSpaceError(
                f"{where}.{prefix}{key}", "keys must be non-empty strings without dots", "nest mappings instead of dotted keys"
            )
        path = f"{prefix}{key}"
        is_sampler = isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SAMPLERS
        if isinstance(value, dict) and not is_sampler:
            if not value:
                raise SearchSpaceError(
                    f"{where}.{path}", "empty mapping", f"give a value or one of the samplers {', '.join(SAMPLERS)}"
                )
            if any(k in SAMPLERS for k in value):
                raise SearchSpaceError(
                    f"{where}.{path}",
                    f"a sampler mapping takes exactly one key, got {sorted(value)}",
                    "write e.g. {choice: [1, 2]}",
                )
            yield from _walk(value, prefix=f"{path}.", where=where)
        else:
            yield path, value


def _check_sampler(key: str, kind: str, args: Any) -> tuple[Any, ...]:
    if not isinstance(args, list):
        raise SearchSpaceError(key, f"{kind} takes a list, got {args!r}", f"write {kind}: [...]")
    if kind in ("choice", "grid"):
        if not args:
            raise SearchSpaceError(key, f"{kind} has no values", "list at least one value")
        return tuple(args)
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise SearchSpaceError(key, f"{kind} takes [low, high] numbers, got {args!r}", f"write {kind}: [low, high]")
    low, high = args
    if kind == "randint":
        if not (isinstance(low, int) and isinstance(high, int)):
            raise SearchSpaceError(key, f"randint takes integers, got {args!r}", "use whole numbers")
        if high <= low:
            raise SearchSpaceError(key, f"randint needs low < high (high excluded), got {args!r}", "raise high")
    elif kind == "loguniform" and not 0 < low < high:
        raise SearchSpaceError(key, f"loguniform needs 0 < low < high, got {args!r}", "use positive bounds, low first")
    elif kind == "uniform" and not low < high:
        raise SearchSpaceError(key, f"uniform needs low < high, got {args!r}", "put the smaller bound first")
    return (low, high)


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for path, value in flat.items():
        node = nested
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, prefix=f"{path}."))
        else:
            flat[path] = value
    return flat


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def count_trials(space: SearchSpace, num_samples: int) -> int:
    return num_samples * space.grid_size


__all__ = [
    "SAMPLERS",
    "Sampler",
    "SearchSpace",
    "SearchSpaceError",
    "count_trials",
    "deep_merge",
    "flatten",
    "parse_search_space",
    "unflatten",
]
