"""Search files: an Optuna study over the view policy, on a base run config.

Format::

    name: search_views        # study and registry grid name (default: the file stem)
    workdir: runs/search_views  # trial <n> runs in <workdir>/trials/t<n>; the journal lives here
    base: {...}               # a run config without ``views`` (the search sets them), or a path
    objective: knn_top1       # knn_top1 | linear_top1, maximised; its stage must be in base.stages
    budget: {trials: 16, epochs: 3}   # trials in the whole study (a target); epochs per trial
    workers: 2                # trials at once (default: local cores / 2, else 1)
    sampler: tpe              # tpe | grid | cmaes, or {kind: tpe, seed: 0, ...} (Optuna options)
    pruner: median            # median | hyperband | threshold | none, or {kind: median, ...}
    storage: null             # default: a journal file <workdir>/study.journal (one machine);
                              # a database URL (postgresql://...) for workers on many machines
                              # (--executor slurm needs one: search/executor_storage.py)
    heartbeat: {interval: 60, grace: 180}  # database storages only: seconds between heartbeats,
                              # and of silence after which a trial is failed and retried
    space: {...}              # the four view parameters (orchestrator/search/space.py)
    resources: {...}          # what one worker's job asks the scheduler for (as in grid files)

``${VAR}`` / ``${VAR:-default}`` expand as in grid files. Command-line ``key=value`` overrides
apply to ``base`` after ``budget.epochs`` (so ``train.epochs=1`` wins). Every problem is one
``ConfigError`` naming the file, the key and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from orchestrator.grid import parse as grid_parse
from orchestrator.grid.spec import Resources, _resources
from orchestrator.search.samplers import PRUNERS, SAMPLERS, parse_pruner, parse_sampler
from orchestrator.search.space import (
    Parameter,
    check_references,
    parse_space,
    reference_points,
    views_for,
)
from sslight import ConfigError, apply_overrides, resolve, set_dotted

TOP_LEVEL_KEYS = (
    "name",
    "workdir",
    "base",
    "objective",
    "budget",
    "workers",
    "sampler",
    "pruner",
    "storage",
    "heartbeat",
    "space",
    "resources",
)
OBJECTIVES = {"knn_top1": "knn", "linear_top1": "linear"}  # metric -> the stage computing it
JOURNAL_NAME = "study.journal"
DEFAULT_HEARTBEAT = {"interval": 60, "grace": 180}


@dataclass(frozen=True)
class Search:
    """A validated search file; ``to_spec`` is what the registry and the workers keep."""

    name: str
    source: str
    workdir: str
    base: dict[str, Any]  # the run config of every trial as written, less views and output_dir
    objective: str
    trials: int
    workers: int | None
    sampler: dict[str, Any]  # {"kind": ..., **options}
    pruner: dict[str, Any]
    storage: str  # a database URL or an absolute journal file path
    heartbeat: dict[str, int] | None
    space: dict[str, Parameter]
    references: dict[str, dict[str, Any]]  # "baseline"/"sslight" -> params
    resources: Resources

    @property
    def uses_database(self) -> bool:
        return "://" in self.storage

    def fingerprint(self) -> str:
        """What makes two runs of a study comparable: base config, space and objective."""
        data = {
            "base": self.base,
            "space": {n: p.to_dict() for n, p in self.space.items()},
            "objective": self.objective,
        }
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def trial_config(self, params: dict[str, Any], output_dir: str) -> Any:
        """The resolved run config of one point of the space."""
        source = f"{self.source}: trial {params}"
        raw = copy.deepcopy(self.base)
        shared = resolve({**raw, "output_dir": ""}, source=source)  # image size, backbone
        raw["views"] = views_for(params, shared.data.image_size, _patch_size(shared.backbone))
        raw["output_dir"] = output_dir
        return resolve(raw, source=source)

    def make_sampler(self, stream: int = 0) -> optuna.samplers.BaseSampler:
        """The sampler; a configured ``seed`` is mixed with ``stream`` (the workers pass the
        number of trials asked so far), so parallel workers never replay one random sequence."""
        options = {k: v for k, v in self.sampler.items() if k != "kind"}
        if options.get("seed") is not None and stream:
            options["seed"] = (int(options["seed"]) * 1_000_003 + stream) % 2**32
        return SAMPLERS[self.sampler["kind"]][1](self.space, options)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        options = {k: v for k, v in self.pruner.items() if k != "kind"}
        if self.pruner["kind"] == "hyperband":  # resource = epochs
            epochs = resolve({**self.base, "output_dir": ""}, source=self.source).train.epochs
            options = {"min_resource": 1, "max_resource": epochs, **options}
        return PRUNERS[self.pruner["kind"]](**options)

    def to_spec(self) -> dict[str, Any]:
        return {
            "kind": "search",
            "name": self.name,
            "source": self.source,
            "workdir": self.workdir,
            "base": self.base,
            "objective": self.objective,
            "direction": "maximize",
            "trials": self.trials,
            "workers": self.workers,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "storage": self.storage,
            "heartbeat": self.heartbeat,
            "space": {n: p.to_dict() for n, p in self.space.items()},
            "references": self.references,
            "resources": self.resources.model_dump(),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Search:
        space = parse_space(spec["space"], spec["source"])
        fields = {k: spec[k] for k in cls.__dataclass_fields__ if k in spec}
        return cls(**{**fields, "space": space, "resources": Resources(**spec["resources"])})


def _patch_size(backbone: str) -> int | None:
    from sslight import backbone_spec

    return backbone_spec(backbone).patch_size


def load_search(
    path: str | Path,
    overrides: Iterable[str] = (),
    workdir: str | Path | None = None,
    trials: int | None = None,
) -> Search:
    """Read and validate the search file ``path`` (see the module docstring)."""
    path, source = Path(path), str(path)
    doc, name, workdir = grid_parse.read_file(path, TOP_LEVEL_KEYS, workdir)
    budget = _budget(doc.get("budget"), source)
    if trials is not None:
        if trials < 1:
            raise ConfigError("command line", "--trials", f"must be at least 1, got {trials}")
        budget["trials"] = trials
    base = _base(doc, path, source, budget.get("epochs"), list(overrides))
    objective = doc.get("objective", "knn_top1")
    if objective not in OBJECTIVES:
        raise ConfigError(
            source, "objective", f"{objective!r}; choose one of: knn_top1, linear_top1 (maximised)"
        )
    probe = resolve({**base, "output_dir": ""}, source=f"{source}: base")
    if OBJECTIVES[objective] not in probe.stages:
        raise ConfigError(
            source,
            "base.stages",
            f"{probe.stages} lacks {OBJECTIVES[objective]!r}, which "
            f"computes the objective {objective}",
        )
    space = parse_space(doc.get("space"), source)
    references = _references(probe, space, source)
    pruner = parse_pruner(doc.get("pruner", "median"), probe, source)
    sampler = parse_sampler(doc.get("sampler", "tpe"), space, source)
    storage = _storage(doc.get("storage"), str(workdir), source)
    search = Search(
        name=name,
        source=source,
        workdir=str(workdir),
        base=base,
        objective=objective,
        trials=budget["trials"],
        workers=_positive(doc.get("workers"), source, "workers"),
        sampler=sampler,
        pruner=pruner,
        storage=storage,
        heartbeat=_heartbeat(doc.get("heartbeat"), "://" in storage, source),
        space=space,
        references=references,
        resources=_resources(doc.get("resources"), source),
    )
    for params in references.values():  # both reference runs must validate
        search.trial_config(params, "")
    return search


def _positive(value: Any, source: str, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(source, key, f"must be a positive integer, got {value!r}")
    return value


def _budget(raw: Any, source: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or "trials" not in raw:
        raise ConfigError(source, "budget", "must be a mapping {trials: N, epochs: E}")
    unknown = [k for k in raw if k not in ("trials", "epochs")]
    if unknown:
        raise ConfigError(source, f"budget.{unknown[0]}", "unknown key; allowed: trials, epochs")
    return {
        "trials": _positive(raw["trials"], source, "budget.trials"),
        "epochs": _positive(raw.get("epochs"), source, "budget.epochs"),
    }


def _base(
    doc: dict[str, Any], path: Path, source: str, epochs: int | None, overrides: list[str]
) -> dict[str, Any]:
    base = grid_parse.base(doc.get("base"), path, source)
    for key in ("views", "output_dir"):
        if key in base:
            where = "the search sets views per trial" if key == "views" else "set per trial"
            raise ConfigError(source, f"base.{key}", f"{where}; remove it from base")
    if epochs is not None:
        set_dotted(base, "train.epochs", epochs, source)
    for item in overrides:
        key = item.partition("=")[0]
        if key.split(".")[0] in ("views", "output_dir"):
            raise ConfigError("command line", key, "is set per trial by the search; use space:")
    # as written (not resolved): the study's fingerprint must not change with new defaults
    return apply_overrides(base, overrides)


def _references(probe: Any, space: dict[str, Parameter], source: str) -> dict[str, dict]:
    from sslight import METHODS, backbone_spec

    family = backbone_spec(probe.backbone).family
    points = reference_points(METHODS.get(probe.method), family)
    if not points:
        raise ConfigError(
            source,
            "base.backbone",
            f"{probe.method} has no baseline/SSLight presets for "
            f"{family} backbones to compare against",
        )
    return check_references(space, points, source)


def _storage(raw: Any, workdir: str, source: str) -> str:
    if raw is None or raw == "":  # `${OPTUNA_STORAGE:-}` unset: the default
        return str((Path(workdir) / JOURNAL_NAME).resolve())
    if not isinstance(raw, str) or not raw:
        raise ConfigError(
            source,
            "storage",
            f"a database URL (postgresql://...) or a journal file path, got {raw!r}",
        )
    return raw if "://" in raw else str(Path(raw).expanduser().resolve())


def _heartbeat(raw: Any, database: bool, source: str) -> dict[str, int] | None:
    if raw is None:
        return dict(DEFAULT_HEARTBEAT) if database else None
    if not database:
        raise ConfigError(
            source,
            "heartbeat",
            "only database storages record heartbeats; with a journal file "
            "the trials of dead workers are found by reconcile and retried",
        )
    if not isinstance(raw, dict) or set(raw) - {"interval", "grace"}:
        raise ConfigError(source, "heartbeat", "must be {interval: seconds, grace: seconds}")
    out = {**DEFAULT_HEARTBEAT, **raw}
    for key in ("interval", "grace"):
        _positive(out[key], source, f"heartbeat.{key}")
    if out["grace"] <= out["interval"]:
        raise ConfigError(source, "heartbeat.grace", "must exceed heartbeat.interval")
    return out
