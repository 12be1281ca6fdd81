"""Submitting a grid: register its cells, claim the ones to run, hand them to an executor.

Claiming is atomic in the registry, so two ``orchestrate grid`` invocations never submit the same
cell; finished, running and submitted cells are left alone.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import submitit

from db import Registry, RunStatus
from orchestrator.execution.executors import local_parallelism, make_executor
from orchestrator.execution.job import CellJob
from orchestrator.grid.spec import Grid, Resources
from orchestrator.tracking.tracker import registry_tracking_uri
from sslight import config_to_dict

log = logging.getLogger(__name__)

RESUMABLE = (RunStatus.FAILED, RunStatus.LOST, RunStatus.CANCELLED)


@dataclass(frozen=True)
class Submission:
    key: str
    name: str
    job: submitit.Job


def register_grid(registry: Registry, grid: Grid) -> None:
    """Record the grid and its cells (new cells start as ``pending``)."""
    spec = {"cells": len(grid.cells), "resources": grid.resources.model_dump()}
    grid_id = registry.upsert_grid(grid.name, str(grid.path), grid.workdir, spec)
    registry.add_runs(
        grid_id,
        [
            {
                "key": c.key,
                "name": c.name,
                "config": config_to_dict(c.config),
                "output_dir": c.output_dir,
            }
            for c in grid.cells
        ],
    )


@dataclass(frozen=True)
class CellSpec:
    """What submitting one cell needs: its registry key, a name and the resolved config."""

    key: str
    name: str
    config: dict


def grid_cells(grid: Grid) -> list[CellSpec]:
    return [CellSpec(c.key, c.name, config_to_dict(c.config)) for c in grid.cells]


def submit(
    registry: Registry,
    cells: list[CellSpec],
    workdir: str,
    resources: Resources,
    executor_kind: str,
    statuses: tuple[str, ...] = (RunStatus.PENDING, *RESUMABLE),
    parallel: int | None = None,
    tracking_uri: str | None = None,
) -> list[Submission]:
    """Claim the ``cells`` in ``statuses`` and submit them; local jobs run ``parallel`` at a time
    and this call waits for them, SLURM jobs go out as one array and it returns. Each cell is
    tracked in MLflow at ``tracking_uri`` (default: ``mlflow.db`` next to an SQLite registry)."""
    by_key = {c.key: c for c in cells}
    keys = registry.claim_for_submission(list(by_key), allowed_statuses=statuses)
    if not keys:
        return []
    executor = make_executor(executor_kind, Path(workdir) / "jobs", resources)
    threads = None
    if executor_kind == "local":
        parallel = parallel or local_parallelism()
        threads = max(1, (os.cpu_count() or 1) // parallel)
    tracking_uri = tracking_uri or registry_tracking_uri(registry.url, workdir)
    jobs = [
        CellJob(
            key,
            by_key[key].config,
            registry.url,
            executor_kind,
            threads=threads,
            tracking_uri=tracking_uri,
        )
        for key in keys
    ]
    names = {key: by_key[key].name for key in keys}
    if executor_kind == "slurm":
        with executor.batch():
            submitted = [executor.submit(job) for job in jobs]
        return _record(registry, jobs, submitted, names, executor_kind)
    if executor_kind == "debug":
        return [_run_now(registry, executor, job, names[job.key]) for job in jobs]
    return _run_bounded(registry, executor, jobs, names, parallel or 1)


def _record(registry, jobs, submitted, names, kind) -> list[Submission]:
    out = []
    for job, handle in zip(jobs, submitted, strict=True):
        registry.start_attempt(job.key, kind, job_id=str(handle.job_id), state=RunStatus.SUBMITTED)
        out.append(Submission(job.key, names[job.key], handle))
    return out


def _start(registry: Registry, executor, job: CellJob, kind: str) -> submitit.Job:
    job.attempt_id = registry.start_attempt(job.key, kind, state=RunStatus.SUBMITTED)
    handle = executor.submit(job)
    registry.update_attempt(job.attempt_id, job_id=str(handle.job_id))
    return handle


def _run_now(registry: Registry, executor, job: CellJob, name: str) -> Submission:
    handle = _start(registry, executor, job, "debug")
    try:
        handle.result()
    except Exception as err:  # recorded by the job itself; the grid goes on
        log.error("cell %s failed: %s", name, err)
    return Submission(job.key, name, handle)


def _run_bounded(registry, executor, jobs: list[CellJob], names, parallel: int) -> list[Submission]:
    """Keep at most ``parallel`` local jobs running; return when all have ended."""
    waiting, running, done = list(jobs), [], []
    while waiting or running:
        while waiting and len(running) < parallel:
            job = waiting.pop(0)
            handle = _start(registry, executor, job, "local")
            log.info("cell %s: started (pid %s)", names[job.key], handle.job_id)
            running.append(Submission(job.key, names[job.key], handle))
        for sub in [s for s in running if s.job.done()]:
            running.remove(sub)
            done.append(sub)
            state = RunStatus.FAILED if sub.job.exception() is not None else RunStatus.FINISHED
            log.info("cell %s: %s", sub.name, state)
        time.sleep(0.5)
    return done
