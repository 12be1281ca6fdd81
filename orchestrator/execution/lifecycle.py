"""One attempt at a registry run, from running to its end, and the MLflow run that mirrors it.

A grid cell (``execution/job.py``) and a search trial (``search/worker.py``) open their attempt
differently (at submission, or when the worker asks the study for a trial) and decide differently
what ended it, but record the ending the same way: the run's status and stage, the attempt's state
and error tail, and the MLflow run's status. ``RunLifecycle`` is that bookkeeping, in one place.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

from db import RunStatus

ERROR_TAIL_CHARS = 4000


@dataclass
class RunLifecycle:
    """Run ``key``'s attempt ``attempt_id``, recorded in ``registry`` and tracked by ``tracker``
    (a ``CellTracker``, or a ``NoTracker`` without an MLflow store)."""

    registry: Any
    key: str
    attempt_id: int
    tracker: Any

    def start(self) -> None:
        """The run is running; its MLflow run starts (or continues, after a requeue)."""
        self.registry.set_status(self.key, RunStatus.RUNNING)
        self.tracker.start()

    def stage(self, stage: str, sync: bool = True) -> None:
        """The run enters ``stage``; with ``sync`` MLflow gets the earlier stages' results."""
        self.registry.set_stage(self.key, stage)
        if sync:
            self.tracker.sync()

    def finished(
        self,
        result: dict[str, Any] | None,
        note: str | None = None,
        attempt_state: str = RunStatus.FINISHED,
    ) -> None:
        """The run ended well: ``result`` recorded (None: nothing new), ``note`` as its error
        column (e.g. why a trial was pruned), the attempt closed as ``attempt_state``."""
        if result is not None:
            self.registry.record_result(self.key, result)
        self.registry.set_status(self.key, RunStatus.FINISHED, error=note)
        self.registry.set_stage(self.key, None)
        self.registry.finish_attempt(self.attempt_id, attempt_state)
        self.tracker.finish("FINISHED")

    def failed(self, message: str) -> None:
        """The run failed with ``message``; the attempt keeps the tail of the current traceback."""
        tail = traceback.format_exc()[-ERROR_TAIL_CHARS:]
        self.registry.set_status(self.key, RunStatus.FAILED, error=message)
        self.registry.finish_attempt(self.attempt_id, RunStatus.FAILED, error_tail=tail)
        self.tracker.finish("FAILED")

    def abandoned(self, note: str, attempt_state: str) -> None:
        """The run was stopped for ``note`` (its work is queued again): cancelled, the attempt
        closed as ``attempt_state`` (e.g. ``preempted``), the MLflow run killed."""
        self.registry.set_status(self.key, RunStatus.CANCELLED, error=note)
        self.registry.finish_attempt(self.attempt_id, attempt_state)
        self.tracker.finish("KILLED")
