"""The stage plan of a grid: which jobs its cells need, what each runs and what it waits for.

A cell's pretraining is a job of its own, shared by every cell of any grid under one registry
with the same ``pretrain_key`` (``sslight.pretrain_key``): it runs once, in
``<workdir>/pretrain/<pretrain_key>/``, and Table 2 (Tan et al., ICLR 2023) evaluates the very
networks Table 1 pretrained. The evaluations follow in jobs that wait for it, grouped so that
cheap stages share a job (``knn`` with ``linear``) and every other stage (each ``semi_<p>``,
``detection``, ``segmentation``) has its own, with the resources of its stage
(``orchestrator/grid/resources.py``). An evaluation job starts from the pretraining's weights
through ``init.weights`` and writes into its cell's run directory.

The cell's first evaluation job keeps the cell's key; further ones are ``<cell key>-<stage>``;
the pretraining is ``pretrain-<pretrain_key>``. A cell whose only stage is ``pretrain`` still
has its job: it links the pretraining's results into the cell's directory.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.grid.resources import Resources, StageResources
from orchestrator.grid.spec import Cell, Grid
from sslight import config_to_dict

PRETRAIN = "pretrain"
SHARED_JOB_STAGES = ("knn", "linear")  # cheap on frozen features: one job
CELL, PRETRAINING, STAGE = "cell", "pretrain", "stage"  # the registry's runs.kind


@dataclass(frozen=True)
class StageJob:
    """One job of the plan, as the registry records it (``registry_fields``)."""

    key: str
    kind: str
    name: str
    stages: tuple[str, ...]
    config: dict[str, Any]
    output_dir: str
    resources: Resources
    pretrain_key: str | None = None
    parent_key: str | None = None  # the cell a further evaluation job belongs to
    depends_on: str | None = None  # the pretraining job's key

    @property
    def cell_key(self) -> str | None:
        return self.parent_key if self.kind == STAGE else self.key if self.kind == CELL else None

    def registry_fields(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "config": self.config,
            "output_dir": self.output_dir,
            "kind": self.kind,
            "pretrain_key": self.pretrain_key,
            "parent_key": self.parent_key,
            "depends_on": self.depends_on,
            "resources": self.resources.model_dump(),
        }


def pretrain_job_key(pretrain_key: str) -> str:
    return f"{PRETRAIN}-{pretrain_key}"


def pretrain_dir(workdir: str | Path, pretrain_key: str) -> str:
    """Where a grid in ``workdir`` pretrains ``pretrain_key`` unless another grid already does."""
    return str(Path(workdir) / PRETRAIN / pretrain_key)


def group_stages(stages: list[str]) -> list[tuple[str, ...]]:
    """The evaluation stages of a cell as jobs, in stage order: ``knn`` and ``linear`` together
    (where the first of them is), every other one alone; pretraining is not among them."""
    groups: list[tuple[str, ...]] = []
    shared = tuple(s for s in stages if s in SHARED_JOB_STAGES)
    for stage in stages:
        if stage == PRETRAIN:
            continue
        if stage in SHARED_JOB_STAGES:
            if stage == shared[0]:
                groups.append(shared)
            continue
        groups.append((stage,))
    return groups


def plan_grid(grid: Grid, shared: Mapping[str, str] | None = None) -> list[StageJob]:
    """Every job of ``grid``, pretrainings first; ``shared`` maps the pretrain keys already
    registered (by any grid) to their directories, which are then used instead of new ones."""
    shared = dict(shared or {})
    pretrainings: dict[str, StageJob] = {}
    evaluations: list[StageJob] = []
    for cell in grid.cells:
        config = config_to_dict(cell.config)
        depends_on = key = None
        if PRETRAIN in config["stages"]:
            key = cell.pretrain_key
            directory = shared.setdefault(key, pretrain_dir(grid.workdir, key))
            if key not in pretrainings:
                pretrainings[key] = _pretraining(cell, config, key, directory, grid.resources)
            depends_on = pretrainings[key].key
            config = _evaluating(config, directory)
        evaluations.extend(_evaluations(cell, config, key, depends_on, grid.resources))
    return [*pretrainings.values(), *evaluations]


def _pretraining(
    cell: Cell, config: dict[str, Any], key: str, directory: str, resources: StageResources
) -> StageJob:
    job_config = {**copy.deepcopy(config), "stages": [PRETRAIN], "output_dir": directory}
    return StageJob(
        key=pretrain_job_key(key),
        kind=PRETRAINING,
        name=f"{PRETRAIN}:{cell.name}",
        stages=(PRETRAIN,),
        config=job_config,
        output_dir=directory,
        resources=resources.for_stages([PRETRAIN]),
        pretrain_key=key,
    )


def _evaluating(config: dict[str, Any], directory: str) -> dict[str, Any]:
    """The cell's config for its evaluation jobs: the pretraining's weights, no pretraining."""
    out = copy.deepcopy(config)
    out["stages"] = [s for s in out["stages"] if s != PRETRAIN]
    out.setdefault("init", {})["weights"] = directory
    return out


def _evaluations(
    cell: Cell,
    config: dict[str, Any],
    pretrain_key: str | None,
    depends_on: str | None,
    resources: StageResources,
) -> list[StageJob]:
    groups = group_stages(config["stages"]) or [()]  # (): only link the pretraining's results
    jobs = []
    for index, stages in enumerate(groups):
        first = index == 0
        jobs.append(
            StageJob(
                key=cell.key if first else f"{cell.key}-{stages[0]}",
                kind=CELL if first else STAGE,
                name=cell.name if first else f"{cell.name}:{stages[0]}",
                stages=stages,
                config={**config, "stages": list(stages)},
                output_dir=cell.output_dir,
                resources=resources.for_stages(stages),
                pretrain_key=pretrain_key,
                parent_key=None if first else cell.key,
                depends_on=depends_on,
            )
        )
    return jobs
