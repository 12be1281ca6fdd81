"""The sampler and pruner of a search file: ``sampler: tpe`` (or ``{kind: tpe, seed: 0, ...}``:
the options are the Optuna class's keywords), ``grid`` or ``cmaes``; ``pruner: median``,
``hyperband``, ``threshold`` or ``none``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import optuna

from orchestrator.search.space import Parameter
from sslight import ConfigError


def _tpe(space: dict[str, Parameter], options: dict[str, Any]) -> optuna.samplers.BaseSampler:
    # constant_liar: parallel workers do not all draw the point the others are evaluating
    return optuna.samplers.TPESampler(**{"multivariate": True, "constant_liar": True, **options})


def _grid(space: dict[str, Parameter], options: dict[str, Any]) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GridSampler({n: p.grid() for n, p in space.items()}, **options)


def _cmaes(space: dict[str, Parameter], options: dict[str, Any]) -> optuna.samplers.BaseSampler:
    return optuna.samplers.CmaEsSampler(**options)


SAMPLERS: dict[str, tuple[type, Callable[..., optuna.samplers.BaseSampler]]] = {
    "tpe": (optuna.samplers.TPESampler, _tpe),
    "grid": (optuna.samplers.GridSampler, _grid),
    "cmaes": (optuna.samplers.CmaEsSampler, _cmaes),
}
PRUNERS: dict[str, type] = {
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "none": optuna.pruners.NopPruner,
}


def parse_sampler(raw: Any, space: dict[str, Parameter], source: str) -> dict[str, Any]:
    """The file's ``sampler:`` as ``{"kind": ..., **options}``; a grid needs a finite space."""
    sampler = _options(raw, "sampler", {k: v[0] for k, v in SAMPLERS.items()}, source)
    if sampler["kind"] == "grid":
        _check_grid(space, source)
    return sampler


def parse_pruner(raw: Any, probe: Any, source: str) -> dict[str, Any]:
    """The file's ``pruner:`` as ``{"kind": ..., **options}``; pruning needs the k-NN monitor
    of ``probe`` (the base run config, resolved)."""
    pruner = _options(raw, "pruner", PRUNERS, source)
    if pruner["kind"] != "none" and not probe.eval.knn.monitor:
        raise ConfigError(
            source,
            "pruner",
            "needs the per-epoch k-NN monitor; set base.eval.knn.monitor: true or pruner: none",
        )
    return pruner


def _options(raw: Any, key: str, kinds: dict[str, type], source: str) -> dict[str, Any]:
    """``name`` or ``{kind: name, option: value, ...}``; options are the class's keywords."""
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, dict) or raw.get("kind") not in kinds:
        got = raw.get("kind") if isinstance(raw, dict) else raw
        raise ConfigError(source, key, f"{got!r}; choose one of: {', '.join(kinds)}")
    allowed = [
        p
        for p in inspect.signature(kinds[raw["kind"]].__init__).parameters
        if p not in ("self", "search_space", "independent_sampler", "source_trials", "x0")
    ]
    for option, value in raw.items():
        if option != "kind" and option not in allowed:
            raise ConfigError(
                source,
                f"{key}.{option}",
                f"unknown option of {raw['kind']}; allowed: {', '.join(allowed) or 'none'}",
            )
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise ConfigError(source, f"{key}.{option}", f"must be a plain value, got {value!r}")
    return dict(raw)


def _check_grid(space: dict[str, Parameter], source: str) -> None:
    for name, param in space.items():
        if param.grid() is None:
            raise ConfigError(
                source, f"space.{name}", "sampler grid needs a finite set: give step or choices"
            )
