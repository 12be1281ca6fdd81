"""What a submitted job runs: one grid cell through ``sslight.run``, reporting to the registry.

The callable is submitit-checkpointable: on preemption or timeout it records the attempt and asks
submitit to requeue the same cell, which then resumes from ``checkpoints/last.pt``. A job with
several tasks trains data-parallel through ``TorchDistributedEnvironment``; only rank 0 writes to
the registry.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import submitit

from db import RunStatus
from orchestrator.execution.lifecycle import RunLifecycle
from orchestrator.execution.shared_pretraining import link_pretraining, pretraining_of

log = logging.getLogger(__name__)


def _job_environment() -> submitit.JobEnvironment | None:
    try:
        return submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job (e.g. called directly)
        return None


def _open_attempt(registry: Any, key: str, job_id: str) -> int | None:
    """The attempt recorded for this job at submission, if it is still open."""
    for attempt in reversed(registry.attempts(key)):
        if attempt.job_id == job_id and attempt.ended_at is None:
            return attempt.id
    return None


@dataclass
class CellJob(submitit.helpers.Checkpointable):
    """Run cell ``key`` (a resolved run config) and keep its registry row up to date."""

    key: str
    config: dict[str, Any]
    db_url: str
    executor: str
    attempt_id: int | None = None
    threads: int | None = None
    tracking_uri: str | None = None  # MLflow store of the cell's run; None: no tracking
    tracking_tags: dict[str, str] | None = None  # extra MLflow tags (e.g. a search trial)
    depends_on: str | None = None  # the pretraining job it starts from (plan.py)
    track_as: str | None = None  # the registry run whose MLflow run it logs to (its cell's)
    _registry: Any = field(default=None, repr=False, compare=False)
    _preempted: bool = field(default=False, repr=False, compare=False)

    def _open(self) -> Any:
        from db import open_registry

        if self._registry is None:
            self._registry = open_registry(self.db_url)
        return self._registry

    def __call__(self) -> dict[str, Any]:
        import sslight

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        logging.getLogger("alembic").setLevel(logging.WARNING)
        env = _job_environment()
        rank = env.global_rank if env is not None else 0
        if env is not None and env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        if rank != 0:
            return sslight.run(sslight.resolve(self.config, source=f"cell {self.key}"))

        registry = self._open()
        job_id = env.job_id if env is not None else str(os.getpid())
        if self.attempt_id is None:  # recorded at submission (arrays), else a requeue
            self.attempt_id = _open_attempt(registry, self.key, job_id) or registry.start_attempt(
                self.key, self.executor, job_id=job_id
            )
        registry.update_attempt(self.attempt_id, state=RunStatus.RUNNING, node=socket.gethostname())
        run = RunLifecycle(registry, self.key, self.attempt_id, self._tracker(registry))
        run.start()
        try:
            cfg = sslight.resolve(self.config, source=f"cell {self.key}")
            pretraining = pretraining_of(self.config, self.depends_on)
            if pretraining is not None:
                link_pretraining(cfg.output_dir, pretraining)
            # each stage syncs MLflow: the stages before it have their results in result.json
            result = sslight.run(cfg, on_stage=run.stage, on_epoch=lambda _: run.tracker.sync())
        except BaseException as err:
            current = registry.run(self.key)
            if self._preempted or (current is not None and current.status == RunStatus.CANCELLED):
                # checkpoint() or `orchestrate cancel` has recorded why we stop; a requeued
                # job continues the same MLflow run
                run.tracker.finish("RUNNING" if self._preempted else "KILLED")
                raise
            run.failed(f"{type(err).__name__}: {err}")
            raise
        run.finished(result)
        if self.track_as:  # the cell's row shows every evaluation job's results
            registry.record_result(self.track_as, result)
        return result

    def _tracker(self, registry: Any) -> Any:
        """The cell's MLflow tracker (one that does nothing without a tracking URI)."""
        from orchestrator.tracking.tracker import CellJobsTracker, CellTracker, NoTracker

        if not self.tracking_uri:
            return NoTracker()
        key = self.track_as or self.key
        tracker = CellTracker(registry, key, self.tracking_uri, extra_tags=self.tracking_tags)
        return CellJobsTracker(tracker, registry, key, self.key)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Preempted or timed out: close this attempt and requeue; training resumes from last.pt."""
        self._preempted = True  # submitit exits this process next: not a failure
        env = _job_environment()
        if (env is None or env.global_rank == 0) and self.attempt_id is not None:
            registry = self._open()
            registry.finish_attempt(self.attempt_id, "preempted")
            registry.set_status(self.key, RunStatus.SUBMITTED)
        requeued = CellJob(
            self.key,
            self.config,
            self.db_url,
            self.executor,
            None,
            self.threads,
            self.tracking_uri,
            self.tracking_tags,
            self.depends_on,
            self.track_as,
        )
        return submitit.helpers.DelayedSubmission(requeued)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_registry"] = None  # connections do not travel to the job
        return state
