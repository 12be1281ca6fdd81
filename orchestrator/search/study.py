"""The Optuna study behind a search: storage, creation, the trial budget and retries.

One study per search name, in a journal file (one machine) or a database (many). Creating it,
asking it for a trial and retrying a trial happen under a lock on the search's registry row, so
workers on any machine never run more trials than the budget and never retry a trial twice.

A trial counts against the budget while it runs and once it completed, was pruned or failed with
an error of its own; a trial whose worker died (no error recorded) is failed and retried: a
WAITING copy with the same parameters (``RetryHeartbeatStaleTrialCallback``, which database
storages also call from their heartbeats) that runs in the same output directory and so resumes
from the dead trial's checkpoint.
"""

from __future__ import annotations

import hashlib
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import select

from db import Registry, with_driver
from db.models import Grid
from orchestrator.search.spec import Search
from sslight import ConfigError

optuna.logging.set_verbosity(optuna.logging.WARNING)
FINGERPRINT, UID, REFERENCE, ERROR = "fingerprint", "uid", "reference", "error"
DIRECTION = "maximize"


def open_storage(search: Search) -> optuna.storages.BaseStorage:
    """The study's storage: journal file, or a database with heartbeats and retries."""
    if not search.uses_database:
        Path(search.storage).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(search.storage))
    heartbeat = search.heartbeat or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(
            with_driver(search.storage),
            heartbeat_interval=heartbeat.get("interval"),
            grace_period=heartbeat.get("grace"),
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(),
        )


@contextmanager
def study_lock(registry: Registry, name: str) -> Iterator[None]:
    """Hold the search's registry row locked (SQLite: the write lock) for the block.

    Nothing inside may write to the registry: it would wait for this very lock.
    """
    with registry.session() as session:
        session.execute(select(Grid.id).where(Grid.name == name).with_for_update())
        yield


def load_study(search: Search, storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    return optuna.load_study(
        study_name=search.name,
        storage=storage or open_storage(search),
        sampler=search.make_sampler(),
        pruner=search.make_pruner(),
    )


def open_study(search: Search, registry: Registry) -> optuna.Study:
    """Create the study (its first trials: the baseline and SSLight points) or continue it."""
    storage = open_storage(search)
    with study_lock(registry, search.name):
        study = optuna.create_study(
            study_name=search.name,
            storage=storage,
            sampler=search.make_sampler(),
            pruner=search.make_pruner(),
            direction=DIRECTION,
            load_if_exists=True,
        )
        attrs = study.user_attrs
        if FINGERPRINT not in attrs:
            study.set_user_attr(FINGERPRINT, search.fingerprint())
            study.set_user_attr(UID, uuid.uuid4().hex)
            study.set_user_attr("objective", search.objective)
            for label, params in search.references.items():
                study.enqueue_trial(params, user_attrs={REFERENCE: label})
        elif attrs[FINGERPRINT] != search.fingerprint():
            raise ConfigError(
                search.source,
                "base",
                f"study {search.name!r} in {display_storage(search)} was run with another base "
                "config, space or objective; its trials would not compare. Set another name: "
                "or --workdir (or storage:) to start a new study",
            )
    return study


def display_storage(search: Search) -> str:
    from db import mask_url

    return mask_url(search.storage) if search.uses_database else search.storage


def trial_key(study: optuna.Study, number: int) -> str:
    """The registry key of trial ``number`` (unique per study, even one recreated by name)."""
    text = f"{study.user_attrs[UID]}:{number}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def origin_number(study: optuna.Study, number: int) -> int:
    """The trial a retry repeats (its output directory is reused), else the trial itself."""
    trial = find_trial(study, number)
    return trial.system_attrs.get("failed_trial", number) if trial is not None else number


@dataclass(frozen=True)
class Tally:
    complete: int = 0
    pruned: int = 0
    failed: int = 0  # failed with an error of their own
    running: int = 0
    waiting: int = 0
    retried: int = 0  # failed because their worker died; a copy was queued

    @property
    def counted(self) -> int:
        """Trials that use up the budget: finished ones and running ones."""
        return self.complete + self.pruned + self.failed + self.running


def tally(study: optuna.Study) -> Tally:
    counts = dict.fromkeys(Tally.__dataclass_fields__, 0)
    names = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.RUNNING: "running",
        TrialState.WAITING: "waiting",
    }
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.FAIL:
            counts["failed" if ERROR in trial.user_attrs else "retried"] += 1
        else:
            counts[names[trial.state]] += 1
    return Tally(**counts)


def exhausted(study: optuna.Study) -> bool:
    """A grid sampler that has visited its whole grid has nothing more to propose."""
    sampler = study.sampler
    return isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)


def fail_stale(study: optuna.Study) -> None:
    """Database storages: fail trials whose heartbeat stopped (their retry is queued)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def retry_trial(study: optuna.Study, number: int) -> int | None:
    """Fail running trial ``number`` and queue a copy; the copy's number (None if not running,
    or the one a heartbeat queued already)."""
    trial = find_trial(study, number)
    if trial is not None and trial.state == TrialState.RUNNING:
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            RetryHeartbeatStaleTrialCallback()(study, find_trial(study, number))
    return retry_of(study, number)


def retry_of(study: optuna.Study, number: int) -> int | None:
    """The trial queued to repeat trial ``number``, if any."""
    for trial in study.get_trials(deepcopy=False):
        if trial.system_attrs.get("retry_history", [None])[-1] == number:
            return trial.number
    return None


def find_trial(study: optuna.Study, number: int) -> FrozenTrial | None:
    return next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
