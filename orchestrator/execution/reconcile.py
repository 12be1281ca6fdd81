"""Reconciling the registry with the executors: jobs that died without a word become ``lost``.

A SLURM job is asked through submitit (``sacct``/``squeue``); a local job is a process of this
machine, alive or not. Cancelling goes the same way in the other direction.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import submitit

from db import Registry, RunStatus, RunView

log = logging.getLogger(__name__)

ACTIVE = (RunStatus.SUBMITTED, RunStatus.RUNNING)
SLURM_DEAD = {
    "CANCELLED",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "TIMEOUT",
    "COMPLETED",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
    "REVOKED",
}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _slurm_job(folder: Path, job_id: str) -> submitit.SlurmJob:
    return submitit.SlurmJob(folder=folder, job_id=job_id)


def job_gone(executor: str, job_id: str | None, folder: Path) -> str | None:
    """Why the job is gone, or None while it may still run."""
    if not job_id:
        return None
    if executor == "local":
        return None if _pid_alive(int(job_id)) else f"local process {job_id} is gone"
    if executor == "slurm":
        state = _slurm_job(folder, job_id).state.split()[0]
        return f"SLURM job {job_id} is {state}" if state in SLURM_DEAD else None
    return None  # debug jobs run inside the orchestrator


def reconcile(registry: Registry, grid: str | None = None) -> list[str]:
    """Mark active runs whose job has ended without reporting as ``lost``; return their keys."""
    lost = []
    active = registry.runs(grid_name=grid, statuses=ACTIVE)
    attempts_of = registry.attempts_by_key([run.key for run in active])  # one query, not one each
    for run in active:
        attempts = attempts_of.get(run.key, [])
        if not attempts:
            continue
        last = attempts[-1]
        reason = job_gone(last.executor, last.job_id, _jobs_folder(registry, run))
        if reason is None:
            continue
        current = registry.run(run.key)  # it may have finished meanwhile
        if current is None or current.status not in ACTIVE:
            continue
        registry.set_status(run.key, RunStatus.LOST, error=reason)
        if last.ended_at is None:
            registry.finish_attempt(last.id, RunStatus.LOST, error_tail=reason)
        lost.append(run.key)
        log.warning("cell %s: lost (%s)", run.name, reason)
    if lost:  # trials of a search: the study fails them and queues a copy (journal storages)
        from orchestrator.search.recovery import retry_lost_trials

        retry_lost_trials(registry, lost)
    return lost


def cancel(registry: Registry, grid: str | None = None) -> list[str]:
    """Stop every active job of ``grid`` and mark its run ``cancelled``."""
    cancelled = []
    for run in registry.runs(grid_name=grid, statuses=ACTIVE):
        # first, so the stopping job keeps this status
        registry.set_status(run.key, RunStatus.CANCELLED)
        attempts = registry.attempts(run.key)
        last = attempts[-1] if attempts else None
        if last is not None and last.job_id and last.ended_at is None:
            if last.executor == "slurm":
                _slurm_job(_jobs_folder(registry, run), last.job_id).cancel(check=False)
            elif last.executor == "local" and _pid_alive(int(last.job_id)):
                # submitit's local controller forwards SIGINT to its tasks (jobs ignore SIGTERM,
                # which SLURM sends before a requeue)
                os.kill(int(last.job_id), signal.SIGINT)
            registry.finish_attempt(last.id, RunStatus.CANCELLED)
        cancelled.append(run.key)
    return cancelled


def release_blocked(registry: Registry, runs: list[RunView]) -> list[str]:
    """Jobs of ``runs`` waiting for a pretraining that failed, was cancelled or was lost: their
    held SLURM jobs (``DependencyNeverSatisfied``) are cancelled and they go back to
    ``pending``, to be submitted again after it. Returns their keys."""
    upstream = {r.key: r for r in registry.runs(keys={r.depends_on for r in runs if r.depends_on})}
    dead = (RunStatus.FAILED, RunStatus.LOST, RunStatus.CANCELLED)
    released = []
    for run in runs:
        waits_on = upstream.get(run.depends_on or "")
        if run.status != RunStatus.SUBMITTED or waits_on is None or waits_on.status not in dead:
            continue
        attempts = registry.attempts(run.key)
        last = attempts[-1] if attempts else None
        if last is not None and last.ended_at is None:
            if last.executor == "slurm" and last.job_id:
                _slurm_job(_jobs_folder(registry, run), last.job_id).cancel(check=False)
            registry.finish_attempt(last.id, "blocked")
        registry.set_status(run.key, RunStatus.PENDING)
        released.append(run.key)
    return released


def _jobs_folder(registry: Registry, run: RunView) -> Path:
    workdirs = {g.name: g.workdir for g in registry.grids()}
    return Path(workdirs.get(run.grid, ".")) / "jobs"
