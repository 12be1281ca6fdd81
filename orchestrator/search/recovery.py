"""Keeping a study and its registry rows in step after workers died.

Journal storages have no heartbeats, so a trial whose worker was killed stays RUNNING in the
study. ``reconcile`` finds such workers (dead process, ended SLURM job) and marks their rows
``lost``; ``sync_rows`` then fails each of those trials and queues a copy with the same parameters
(the copy reuses the output directory, so it resumes from the checkpoint), and brings the rows of
trials that a database heartbeat already failed, or that finished unrecorded, up to date.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import optuna
from optuna.trial import TrialState

from db import Registry, RunStatus
from orchestrator.search.spec import Search
from orchestrator.search.study import ERROR, load_study, retry_of, retry_trial, study_lock

log = logging.getLogger(__name__)

# Row states of a trial no worker runs any more.
STOPPED = (RunStatus.LOST, RunStatus.CANCELLED, RunStatus.FAILED)
UNRECORDED = (RunStatus.SUBMITTED, RunStatus.RUNNING, RunStatus.LOST)


def retry_lost_trials(registry: Registry, keys: Iterable[str]) -> None:
    """Queue again the trials of searches among the runs ``keys`` (just marked lost)."""
    searches = {g.name: g.spec for g in registry.grids() if g.spec.get("kind") == "search"}
    grids = {run.grid for run in registry.runs(keys=list(keys)) if run.grid in searches}
    for name in sorted(grids):
        search = Search.from_spec(searches[name])
        sync_rows(registry, search, load_study(search))


def sync_rows(registry: Registry, search: Search, study: optuna.Study) -> None:
    """Retry RUNNING trials whose row says no worker runs them; align rows with trial states."""
    rows = {run.key: run for run in registry.runs(grid_name=search.name)}

    def row_of(trial):
        return rows.get(trial.user_attrs.get("registry_key"))

    trials = study.get_trials(deepcopy=False)
    stuck = [
        t.number
        for t in trials
        if t.state == TrialState.RUNNING and row_of(t) is not None and row_of(t).status in STOPPED
    ]
    if stuck:
        with study_lock(registry, search.name):
            for number in stuck:
                retry = retry_trial(study, number)
                log.warning("trial %d: its worker is gone; retried as trial %s", number, retry)
        trials = study.get_trials(deepcopy=False)
    for trial in trials:
        row = row_of(trial)
        if row is None:
            continue
        if trial.state == TrialState.FAIL and ERROR not in trial.user_attrs:
            retry = retry_of(study, trial.number)
            note = f"retried as trial {retry}" if retry is not None else "its worker stopped"
            if row.status != RunStatus.CANCELLED or note not in (row.error or ""):
                error = f"{row.error}; {note}" if row.error and note not in row.error else note
                registry.set_status(row.key, RunStatus.CANCELLED, error=error)
        elif trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and row.status in UNRECORDED:
            registry.set_status(row.key, RunStatus.FINISHED)
