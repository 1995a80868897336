"""Shards of a sweep for `slurm.layout: array`: which trials each array task runs. One module owns the contract.

At submit (login node) the sweep's trials are materialised once, deterministically:
grid expansion x num_samples, random samplers drawn from a numpy Generator seeded by
`search.seed` (a drawn seed, recorded, when the sweep has none), stable ids `t0000`...
They are dealt round-robin into K shards and written to the sweep folder's
`shards.json`; array task i runs a Tune experiment of exactly shard i's trials.

Inside that experiment a trial's config is `{TRIAL_KEY: {"id": ..., "config": ...}}`
(one grid value per trial): the trainable unwraps it in `setup`, and callbacks see the
trial through `trial_id_of` / `unwrap`, i.e. by its stable id and its real config.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.kernel.config.search_space import deep_merge, unflatten
from orchestrator.kernel.files import write_atomic

TRIAL_KEY = "orch_trial"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ShardTrial:
    """One materialised trial: its stable id, the sampled values (flat) and the full config the trainable gets."""

    trial_id: str
    sampled: dict[str, Any]
    config: dict[str, Any]


@dataclass(frozen=True)
class Shard:
    index: int
    trials: tuple[ShardTrial, ...]

    def grid_values(self) -> list[dict[str, Any]]:
        """The values of the shard's one grid axis: each becomes exactly one Tune trial."""
        return [{"id": trial.trial_id, "config": trial.config} for trial in self.trials]


@dataclass(frozen=True)
class ShardPlan:
    """What `shards.json` holds: the seed used and every trial, shard by shard."""

    seed: int
    shards: tuple[Shard, ...]

    @property
    def num_trials(self) -> int:
        return sum(len(shard.trials) for shard in self.shards)

    def shard(self, index: int) -> Shard:
        return self.shards[index]

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": FORMAT_VERSION,
                "seed": self.seed,
                "num_trials": self.num_trials,
                "shards": [{"shard": s.index, "trials": [t.__dict__ for t in s.trials]} for s in self.shards],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> ShardPlan:
        data = json.loads(text)
        shards = tuple(Shard(int(s["shard"]), tuple(ShardTrial(**t) for t in s["trials"])) for s in data["shards"])
        return cls(int(data["seed"]), shards)


def trial_ids(count: int) -> list[str]:
    """`t0000`, `t0001`, ...: sortable, and the same for the same sweep."""
    width = max(4, len(str(count - 1)))
    return [f"t{i:0{width}d}" for i in range(count)]


def materialise(resolved: Any, seed: int | None = None) -> tuple[list[ShardTrial], int]:
    """Every trial of a resolved sweep, in order, with the seed its random values were drawn with."""
    import numpy as np

    seed = resolved.sweep.search.seed if seed is None else seed
    if seed is None:
        seed = secrets.randbits(63)  # recorded in shards.json: the sweep stays reproducible from its folder
    flat_trials = resolved.space.draw_trials(resolved.sweep.num_samples, np.random.default_rng(seed))
    trials = [
        ShardTrial(trial_id, _sampled(resolved.space, flat), deep_merge(resolved.project.defaults, unflatten(flat)))
        for trial_id, flat in zip(trial_ids(len(flat_trials)), flat_trials)
    ]
    return trials, seed


def _sampled(space: Any, flat: Mapping[str, Any]) -> dict[str, Any]:
    return {path: flat[path] for path in space.sampled_paths()}


def split(trials: list[ShardTrial], shards: int) -> list[Shard]:
    """Round-robin into at most `shards` non-empty shards (never more shards than trials)."""
    count = max(1, min(shards, len(trials)))
    return [Shard(i, tuple(trials[i::count])) for i in range(count)]


def plan_shards(resolved: Any, shards: int) -> ShardPlan:
    trials, seed = materialise(resolved)
    return ShardPlan(seed, tuple(split(trials, shards)))


def write_plan(path: Path, plan: ShardPlan) -> None:
    write_atomic(path, plan.to_json())


def read_plan(path: Path) -> ShardPlan:
    return ShardPlan.from_json(path.read_text())


# Inside a shard's Tune experiment: a trial's config is the wrapper, one grid value.
def unwrap(config: Mapping[str, Any]) -> dict[str, Any]:
    """The trainable's real config from a shard trial's Tune config."""
    return dict(config[TRIAL_KEY]["config"])


def trial_id_of(config: Mapping[str, Any]) -> str:
    """The stable trial id (`t0003`) from a shard trial's Tune config."""
    return str(config[TRIAL_KEY]["id"])


def param_space(shard: Shard) -> dict[str, Any]:
    """The shard's `param_space`: one grid axis whose values are its trials, so each runs exactly once."""
    from ray import tune

    return {TRIAL_KEY: tune.grid_search(shard.grid_values())}


def unwrapping_trainable(trainable: Any) -> Any:
    """The trainable taking its config out of the shard wrapper: a thin subclass of a Tune trainable class,
    or a function trainable calling the function with the real config."""
    if not isinstance(trainable, type):
        function = trainable

        def shard_trial(config: dict[str, Any]) -> Any:
            return function(unwrap(config))

        shard_trial.__name__ = shard_trial.__qualname__ = getattr(function, "__name__", "trainable")
        return shard_trial
    trainable_cls: type = trainable

    class ShardTrainable(trainable_cls):
        def setup(self, config: dict[str, Any]) -> None:
            super().setup(unwrap(config))

    ShardTrainable.__name__ = ShardTrainable.__qualname__ = trainable_cls.__name__
    ShardTrainable.__doc__ = trainable_cls.__doc__
    return ShardTrainable


__all__ = [
    "TRIAL_KEY",
    "Shard",
    "ShardPlan",
    "ShardTrial",
    "materialise",
    "param_space",
    "plan_shards",
    "read_plan",
    "split",
    "trial_id_of",
    "trial_ids",
    "unwrap",
    "unwrapping_trainable",
    "write_plan",
]
