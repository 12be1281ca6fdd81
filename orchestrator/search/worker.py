"""What a search worker job runs: ask the study for trials and run each as a registry run.

Each trial is one ``sslight.run`` of the base config with the trial's views, in
``<workdir>/trials/t<n>``, recorded as a run of the search's registry grid (name ``t<n>``).
After every pretraining epoch the k-NN monitor is reported to Optuna and the pruner may stop the
trial: Optuna records it PRUNED, the registry row ``finished`` with ``pruned at epoch k``.
A trial that raises is FAIL with its error (and counts against the budget); a worker that is
interrupted or preempted queues its trial again before it goes.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import submitit

from db import RunStatus
from orchestrator.execution.lifecycle import RunLifecycle
from orchestrator.search.heartbeat import Heartbeat
from orchestrator.search.space import suggest
from orchestrator.search.spec import Search
from orchestrator.search.study import (
    ERROR,
    exhausted,
    fail_stale,
    find_trial,
    load_study,
    open_storage,
    origin_number,
    retry_trial,
    study_lock,
    tally,
    trial_key,
)

log = logging.getLogger(__name__)

RESULT_ATTRS = ("knn_top1", "linear_top1", "monitor_knn_top1")


def trial_name(number: int) -> str:
    return f"t{number:03d}"


@dataclass
class _Running:
    """The trial a worker is running, so an interruption can queue it again."""

    number: int
    run: RunLifecycle  # its registry row, attempt and MLflow run


@dataclass
class SearchWorker(submitit.helpers.Checkpointable):
    """Run trials of the search ``spec`` until the study has its budget of trials."""

    spec: dict[str, Any]
    grid_id: int
    db_url: str
    executor: str
    threads: int | None = None
    tracking_uri: str | None = None  # MLflow store of the trials' runs; None: no tracking
    _registry: Any = field(default=None, repr=False, compare=False)
    _study: Any = field(default=None, repr=False, compare=False)
    _running: _Running | None = field(default=None, repr=False, compare=False)

    def __call__(self) -> int:
        """Run trials until none is left to run; return how many this worker ran."""
        from db import open_registry

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        logging.getLogger("alembic").setLevel(logging.WARNING)
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        search = Search.from_spec(self.spec)
        self._registry = open_registry(self.db_url)
        storage = open_storage(search)
        self._study = study = load_study(search, storage)
        env = _job_environment()
        job_id = env.job_id if env is not None else str(os.getpid())
        ran = 0
        while (trial := self._next_trial(search, study)) is not None:
            try:
                self._run_trial(search, study, storage, trial, job_id)
            except BaseException:  # interrupted, or the registry failed: queue the trial again
                self.abandon("worker stopped", trial.number)
                raise
            ran += 1
        return ran

    def _next_trial(self, search: Search, study: optuna.Study) -> optuna.Trial | None:
        from orchestrator.execution.reconcile import reconcile

        reconcile(self._registry, search.name)  # trials of dead workers are queued again
        with study_lock(self._registry, search.name):
            if search.uses_database:
                fail_stale(study)
            counts = tally(study)
            if counts.counted >= search.trials or (exhausted(study) and not counts.waiting):
                return None
            # Each ask gets its own sampler stream, and the point is drawn under the lock, so
            # workers sharing a seed (or drawing at the same moment) never pick the same point.
            study.sampler = search.make_sampler(stream=len(study.get_trials(deepcopy=False)))
            with warnings.catch_warnings():  # heartbeats are recorded by Heartbeat below
                warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                trial = study.ask()
                suggest(trial, search.space)
            return trial

    def _run_trial(
        self, search: Search, study: optuna.Study, storage: Any, trial: optuna.Trial, job_id: str
    ) -> None:
        import sslight

        params = suggest(trial, search.space)
        output_dir = str(
            Path(search.workdir) / "trials" / trial_name(origin_number(study, trial.number))
        )
        key, name = trial_key(study, trial.number), trial_name(trial.number)
        try:
            cfg = search.trial_config(params, output_dir)
        except ValueError as err:  # a point the run config rejects
            trial.set_user_attr(ERROR, str(err))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            log.error("trial %d: %s", trial.number, err)
            return
        run = self._register_trial(search, trial, cfg, params, (key, name, output_dir), job_id)
        self._running = _Running(trial.number, run)
        log.info("trial %d (%s): %s", trial.number, output_dir, params)

        def on_epoch(summary: dict[str, Any]) -> None:
            run.tracker.sync()
            if summary.get("knn_top1") is None:
                return
            epoch = int(summary["epoch"]) + 1
            trial.report(float(summary["knn_top1"]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        try:
            with self._heartbeat(search, storage, study, trial):
                result = sslight.run(
                    cfg, on_stage=lambda s: run.stage(s, sync=False), on_epoch=on_epoch
                )
        except Exception as err:
            cause = err.__cause__ if isinstance(err.__cause__, optuna.TrialPruned) else err
            if isinstance(cause, optuna.TrialPruned):
                self._pruned(study, trial, run, str(cause))
            else:
                self._failed(study, trial, run, f"{type(err).__name__}: {err}")
        else:
            value = result.get(search.objective)
            if value is None:
                self._failed(study, trial, run, f"result.json has no {search.objective}")
            else:
                self._complete(study, trial, run, result, float(value))
        self._running = None

    def _register_trial(
        self,
        search: Search,
        trial: optuna.Trial,
        cfg: Any,
        params: dict[str, Any],
        row: tuple[str, str, str],
        job_id: str,
    ) -> RunLifecycle:
        """Record the trial as a running registry run (key, name, output_dir) of the search's
        grid, with an attempt of this job and its MLflow run."""
        from sslight import config_to_dict

        registry = self._registry
        key, name, output_dir = row
        fields = {"key": key, "name": name, "config": config_to_dict(cfg), "output_dir": output_dir}
        registry.add_runs(self.grid_id, [fields])
        registry.claim_for_submission([key], allowed_statuses=(RunStatus.PENDING,))
        attempt = registry.start_attempt(
            key, self.executor, job_id=job_id, node=socket.gethostname()
        )
        run = RunLifecycle(registry, key, attempt, self._tracker(search, key, trial.number, params))
        registry.set_status(key, RunStatus.RUNNING)
        trial.set_user_attr("registry_key", key)
        trial.set_user_attr("output_dir", output_dir)
        run.tracker.start()
        return run

    def _tracker(self, search: Search, key: str, number: int, params: dict[str, Any]) -> Any:
        """The trial's MLflow run, tagged with the study, trial number and parameters."""
        from orchestrator.tracking.tracker import CellTracker, NoTracker

        if not self.tracking_uri:
            return NoTracker()
        tags = {
            "search": search.name,
            "trial": str(number),
            "params": json.dumps(params, sort_keys=True),
            **{f"param.{name}": str(value) for name, value in params.items()},
        }
        return CellTracker(self._registry, key, self.tracking_uri, extra_tags=tags)

    def _heartbeat(self, search: Search, storage: Any, study: optuna.Study, trial: optuna.Trial):
        from contextlib import nullcontext

        if not search.uses_database or not search.heartbeat:
            return nullcontext()
        study_id = storage.get_study_id_from_name(study.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        return Heartbeat(storage, trial_id, search.heartbeat["interval"])

    def _complete(self, study, trial, run: RunLifecycle, result, value) -> None:
        for name in RESULT_ATTRS:
            if result.get(name) is not None:
                trial.set_user_attr(name, result[name])
        study.tell(trial, value)
        run.finished({k: v for k, v in result.items() if k != "stages"})
        log.info("trial %d: %s %.2f", trial.number, self.spec["objective"], value)

    def _pruned(self, study, trial, run: RunLifecycle, message) -> None:
        reported = find_trial(study, trial.number).intermediate_values
        last = reported[max(reported)] if reported else None
        if last is not None:
            trial.set_user_attr("monitor_knn_top1", last)
            message += f" (k-NN {last:.1f})"
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        recorded = {"monitor_knn_top1": last} if last is not None else None
        run.finished(recorded, note=message, attempt_state="pruned")
        log.info("trial %d: %s", trial.number, message)

    def _failed(self, study, trial, run: RunLifecycle, message) -> None:
        trial.set_user_attr(ERROR, message)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        run.failed(message)
        log.error("trial %d failed: %s", trial.number, message)

    def abandon(self, reason: str, number: int | None = None) -> None:
        """Queue the running trial (or trial ``number``) again, with the same parameters and
        output directory, and close its attempt and registry row; the copy resumes from the
        trial's checkpoint."""
        running, self._running = self._running, None
        number = running.number if running is not None else number
        if number is None or self._study is None:
            return
        registry, search = self._registry, Search.from_spec(self.spec)
        with study_lock(registry, search.name):
            retry = retry_trial(self._study, number)
        if running is not None:
            note = f"{reason}; retried as trial {retry}" if retry is not None else reason
            running.run.abandoned(note, attempt_state=reason)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Preempted or timed out: queue the running trial again and requeue the worker."""
        self.abandon("preempted")
        fresh = SearchWorker(
            self.spec, self.grid_id, self.db_url, self.executor, self.threads, self.tracking_uri
        )
        return submitit.helpers.DelayedSubmission(fresh)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_registry"] = state["_study"] = state["_running"] = None  # not for the job
        return state


def _job_environment() -> submitit.JobEnvironment | None:
    try:
        return submitit.JobEnvironment()
    except RuntimeError:
        return None
