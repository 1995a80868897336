"""The search-space syntax: parsing, nesting, and translation to Ray Tune."""

from __future__ import annotations

import pytest

from orchestrator.kernel.config.search_space import SearchSpaceError, flatten, parse_search_space, unflatten

SPACE = {
    "lr": {"loguniform": [1e-4, 1e-2]},
    "latent_dim": {"choice": [3, 6]},
    "mode": {"grid": ["a", "b", "c"]},
    "seed": {"randint": [0, 10]},
    "beta": {"uniform": [0.5, 1.0]},
    "model": {"hidden": {"grid": [64, 128]}, "depth": 2},
    "epochs": 5,
}


def test_parse_splits_samplers_and_constants() -> None:
    space = parse_search_space(SPACE)
    assert sorted(space.sampled_paths()) == ["beta", "latent_dim", "lr", "mode", "model.hidden", "seed"]
    assert space.constant_config() == {"model": {"depth": 2}, "epochs": 5}
    assert space.grid_size == 6


def test_to_tune_builds_nested_ray_domains() -> None:
    from ray.tune.search.sample import Categorical, Float, Integer

    tune_space = parse_search_space(SPACE).to_tune()
    assert isinstance(tune_space["lr"], Float)
    assert isinstance(tune_space["latent_dim"], Categorical)
    assert isinstance(tune_space["seed"], Integer)
    assert tune_space["mode"] == {"grid_search": ["a", "b", "c"]}
    assert tune_space["model"]["hidden"] == {"grid_search": [64, 128]}
    assert tune_space["model"]["depth"] == 2 and tune_space["epochs"] == 5


def test_probe_configs_cover_every_sampler_extreme() -> None:
    probes = list(parse_search_space({"lr": {"uniform": [0.1, 0.2]}, "k": {"randint": [1, 4]}}).probe_configs())
    assert ("lr", {"lr": 0.2, "k": 1}) in probes
    assert ("k", {"lr": 0.1, "k": 3}) in probes  # randint's high bound is excluded


def test_flatten_unflatten_round_trip() -> None:
    nested = {"a": {"b": {"c": 1}, "d": 2}, "e": 3}
    assert flatten(nested) == {"a.b.c": 1, "a.d": 2, "e": 3}
    assert unflatten(flatten(nested)) == nested


@pytest.mark.parametrize(
    ("raw", "key", "problem"),
    [
        ({}, "search_space", "empty"),
        ({"lr": {"uniform": [1.0, 0.5]}}, "search_space.lr", "low < high"),
        ({"lr": {"loguniform": [0, 1]}}, "search_space.lr", "0 < low < high"),
        ({"k": {"randint": [3, 3]}}, "search_space.k", "low < high"),
        ({"k": {"randint": [0.5, 3]}}, "search_space.k", "integers"),
        ({"k": {"choice": []}}, "search_space.k", "no values"),
        ({"k": {"grid": "abc"}}, "search_space.k", "takes a list"),
        ({"k": {"uniform": [1, 2, 3]}}, "search_space.k", "[low, high]"),
        ({"k": {"choice": [1], "grid": [2]}}, "search_space.k", "exactly one key"),
        ({"k": {}}, "search_space.k", "empty mapping"),
        ({"a.b": 1}, "search_space.a.b", "without dots"),
    ],
)
def test_impossible_spaces_are_rejected(raw: dict, key: str, problem: str) -> None:
    with pytest.raises(SearchSpaceError) as caught:
        parse_search_space(raw)
    assert caught.value.key.endswith(key)
    assert problem in caught.value.problem
    assert caught.value.fix
