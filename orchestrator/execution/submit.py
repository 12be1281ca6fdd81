"""Submitting a grid: register its stage jobs, claim the ones to run, hand them to an executor.

Claiming is atomic in the registry, so two ``orchestrate grid`` invocations never submit the same
job; finished, running and submitted jobs are left alone. A job waits for the pretraining it
``depends_on`` (``orchestrator/execution/plan.py``): on SLURM through ``--dependency=afterok``,
so the scheduler itself holds it and ``orchestrate grid`` returns at once; locally the bounded
runner starts it once the pretraining has finished. A finished pretraining is not run again: its
evaluations go out with no dependency. One whose pretraining failed, was cancelled or was lost is
not submitted: it is left ``pending`` with ``blocked: pretrain <key> <status>`` until
``orchestrate resume`` reruns the chain.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import submitit

from db import Registry, RunStatus, RunView
from orchestrator.execution.executors import local_parallelism, make_executor
from orchestrator.execution.job import CellJob
from orchestrator.execution.plan import PRETRAIN, PRETRAINING, plan_grid, pretrain_job_key
from orchestrator.grid.resources import Resources
from orchestrator.grid.spec import Grid
from orchestrator.tracking.tracker import registry_tracking_uri

log = logging.getLogger(__name__)

RESUMABLE = (RunStatus.FAILED, RunStatus.LOST, RunStatus.CANCELLED)
DEAD = (RunStatus.FAILED, RunStatus.LOST, RunStatus.CANCELLED)
ACTIVE = (RunStatus.SUBMITTED, RunStatus.RUNNING)


@dataclass(frozen=True)
class Submission:
    key: str
    name: str
    job: submitit.Job


def register_grid(registry: Registry, grid: Grid) -> list[str]:
    """Record the grid and the jobs of its plan (new ones start ``pending``); return the keys of
    the jobs its cells need, pretrainings first. A pretraining another grid registered is
    shared: its directory is the one already recorded."""
    spec = {"cells": len(grid.cells), "resources": grid.resources.to_spec()}
    grid_id = registry.upsert_grid(grid.name, str(grid.path), grid.workdir, spec)
    legacy = _legacy_cells(registry, grid)
    needed = {c.pretrain_key for c in grid.cells if PRETRAIN in c.config.stages}
    wanted = [job for job in plan_grid(grid) if job.kind == PRETRAINING]
    registry.add_runs(grid_id, [j.registry_fields() for j in wanted if j.pretrain_key in needed])
    # the directories as recorded: a concurrent registration of the same key may have won
    recorded = registry.runs(keys=[pretrain_job_key(key) for key in needed])
    shared = {run.pretrain_key: run.output_dir for run in recorded if run.pretrain_key}
    jobs = [job for job in plan_grid(grid, shared) if job.cell_key not in legacy]
    registry.add_runs(grid_id, [j.registry_fields() for j in jobs if j.kind != PRETRAINING])
    depended = {job.depends_on for job in jobs if job.depends_on}
    return [j.key for j in jobs if j.kind != PRETRAINING or j.key in depended] + sorted(legacy)


def _legacy_cells(registry: Registry, grid: Grid) -> set[str]:
    """Cells registered before stage jobs existed: each keeps running all its stages."""
    runs = registry.runs(keys=[c.key for c in grid.cells])
    return {r.key for r in runs if r.kind == "cell" and PRETRAIN in r.config.get("stages", [])}


def submit(
    registry: Registry,
    keys: list[str],
    workdir: str,
    executor_kind: str,
    statuses: tuple[str, ...] = (RunStatus.PENDING, *RESUMABLE),
    parallel: int | None = None,
    tracking_uri: str | None = None,
    default_resources: Resources | None = None,
) -> list[Submission]:
    """Claim the jobs ``keys`` in ``statuses`` and submit them, each after the pretraining it
    depends on; local jobs run ``parallel`` at a time and this call waits for them, SLURM jobs
    go out at once and it returns. Each job is tracked in MLflow at ``tracking_uri`` (default:
    ``mlflow.db`` next to an SQLite registry); a job registered without resources asks for
    ``default_resources``."""
    runs = {run.key: run for run in registry.runs(keys=keys)}
    order = [key for key in keys if key in runs]
    claimed = set(registry.claim_for_submission(order, allowed_statuses=statuses))
    if not claimed:
        return []
    threads = None
    if executor_kind == "local":
        parallel = parallel or local_parallelism()
        threads = max(1, (os.cpu_count() or 1) // parallel)
    context = _Context(
        registry,
        Path(workdir) / "jobs",
        executor_kind,
        tracking_uri or registry_tracking_uri(registry.url, workdir),
        threads,
        default_resources or Resources(),
    )
    jobs = [runs[key] for key in order if key in claimed]
    if executor_kind == "slurm":
        return _submit_chain(context, jobs)
    return _run_in_order(context, jobs, parallel or 1 if executor_kind == "local" else 1)


@dataclass(frozen=True)
class _Context:
    registry: Registry
    folder: Path
    kind: str
    tracking_uri: str
    threads: int | None
    default_resources: Resources

    def resources(self, run: RunView) -> Resources:
        return Resources(**run.resources) if run.resources else self.default_resources

    def job(self, run: RunView) -> CellJob:
        return CellJob(
            run.key,
            run.config,
            self.registry.url,
            self.kind,
            threads=self.threads,
            tracking_uri=self.tracking_uri,
            depends_on=run.depends_on,
            track_as=run.parent_key,
        )


def blocked_reason(dependency: RunView | None, key: str | None) -> str | None:
    """Why a job that waits for ``dependency`` cannot start, or None while it may."""
    if dependency is None:
        return f"blocked: pretraining {key} is not registered"
    if dependency.status in DEAD:
        return f"blocked: pretrain {dependency.pretrain_key} {dependency.status}"
    return None


def _release(context: _Context, run: RunView, reason: str) -> None:
    """Give back a claimed job that cannot start (unless it was cancelled meanwhile)."""
    current = context.registry.run(run.key)
    if current is not None and current.status == RunStatus.SUBMITTED:
        context.registry.set_status(run.key, RunStatus.PENDING, error=reason)
        log.warning("%s: %s", run.name, reason)


def _submit_chain(context: _Context, jobs: list[RunView]) -> list[Submission]:
    """SLURM: every job at once, evaluations with ``--dependency=afterok:<pretraining job>``;
    jobs with the same resources and dependency go out as one array."""
    registry, in_call = context.registry, {run.key for run in jobs}
    waves: dict[tuple[str, str | None], list[RunView]] = {}
    for run in jobs:
        dependency = None
        if run.depends_on in in_call:
            dependency = f"key:{run.depends_on}"  # submitted first, by this very call
        elif run.depends_on:
            upstream = registry.run(run.depends_on)
            reason = blocked_reason(upstream, run.depends_on)
            if upstream is not None and upstream.status not in (RunStatus.FINISHED, *ACTIVE):
                reason = f"blocked: pretrain {upstream.pretrain_key} {upstream.status}"
            if reason is None and upstream.status != RunStatus.FINISHED:
                dependency = _last_slurm_job(registry, upstream.key)
                if dependency is None:
                    reason = f"blocked: pretrain {upstream.pretrain_key} runs outside SLURM"
            if reason is not None:
                _release(context, run, reason)
                continue
        waves.setdefault((context.resources(run).model_dump_json(), dependency), []).append(run)
    handles: dict[str, str] = {}
    out = []
    # waves that wait for a job of this call go out after it
    for (resources_json, dependency), wave in sorted(
        waves.items(), key=lambda item: (item[0][1] or "").startswith("key:")
    ):
        if dependency is not None and dependency.startswith("key:"):
            dependency = handles[dependency.removeprefix("key:")]
        resources = Resources.model_validate_json(resources_json)
        executor = make_executor("slurm", context.folder, resources, after_ok=dependency)
        cells = [context.job(run) for run in wave]
        with executor.batch():
            submitted = [executor.submit(cell) for cell in cells]
        for run, handle in zip(wave, submitted, strict=True):
            registry.start_attempt(
                run.key, "slurm", job_id=str(handle.job_id), state=RunStatus.SUBMITTED
            )
            handles[run.key] = str(handle.job_id)
            out.append(Submission(run.key, run.name, handle))
    return out


def _last_slurm_job(registry: Registry, key: str) -> str | None:
    attempts = registry.attempts(key)
    return attempts[-1].job_id if attempts and attempts[-1].executor == "slurm" else None


def _start(context: _Context, executor: submitit.Executor, run: RunView) -> submitit.Job:
    job = context.job(run)
    job.attempt_id = context.registry.start_attempt(
        run.key, context.kind, state=RunStatus.SUBMITTED
    )
    handle = executor.submit(job)
    context.registry.update_attempt(job.attempt_id, job_id=str(handle.job_id))
    return handle


def _run_in_order(context: _Context, jobs: list[RunView], parallel: int) -> list[Submission]:
    """Local and debug: at most ``parallel`` jobs at once, each once its pretraining finished;
    return when all have ended (or were released as blocked)."""
    registry, in_call = context.registry, {run.key for run in jobs}
    waiting, running, done = list(jobs), [], []
    while waiting or running:
        for run in list(waiting):
            if len(running) >= parallel:
                break
            state = _dependency_state(registry, run, in_call)
            if state == "wait":
                continue
            waiting.remove(run)
            if state is not None:
                _release(context, run, state)
                continue
            executor = make_executor(context.kind, context.folder, context.resources(run))
            handle = _start(context, executor, run)
            log.info("%s: started (%s %s)", run.name, context.kind, handle.job_id)
            if context.kind == "debug":  # runs here and now; asking it again would rerun it
                _wait(handle, run.name)
                done.append(Submission(run.key, run.name, handle))
                continue
            running.append(Submission(run.key, run.name, handle))
        for sub in [s for s in running if s.job.done()]:
            running.remove(sub)
            done.append(sub)
            log.info("%s: %s", sub.name, "failed" if _failed(sub.job) else "finished")
        if waiting or running:
            time.sleep(0.5)
    return done


def _dependency_state(registry: Registry, run: RunView, in_call: set[str]) -> str | None:
    """None: it may start; "wait": its pretraining is still to finish; else why it is blocked."""
    if not run.depends_on:
        return None
    upstream = registry.run(run.depends_on)
    reason = blocked_reason(upstream, run.depends_on)
    if reason is not None:
        return reason
    if upstream.status == RunStatus.PENDING and upstream.key not in in_call:
        return f"blocked: pretrain {upstream.pretrain_key} is pending (resume its grid)"
    return None if upstream.status == RunStatus.FINISHED else "wait"


def _wait(handle: submitit.Job, name: str) -> None:
    try:
        handle.result()
    except Exception as err:  # recorded by the job itself; the grid goes on
        log.error("%s failed: %s", name, err)


def _failed(handle: submitit.Job) -> bool:
    try:
        return handle.exception() is not None
    except Exception:
        return True
