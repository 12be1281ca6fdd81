"""The states a registry run goes through, one enum for the registry and the orchestrator.

``pending`` (registered) -> ``submitted`` (a job holds it) -> ``running`` -> ``finished`` or
``failed``; ``lost`` when its job died without saying so, ``cancelled`` when stopped. The
``runs.status`` column stores the values; a member equals (and prints as) its value.
"""

from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    LOST = "lost"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


STATUSES: tuple[str, ...] = tuple(status.value for status in RunStatus)
# Whoever claims a run in these states may submit it again.
CLAIMABLE: tuple[str, ...] = (
    RunStatus.PENDING.value,
    RunStatus.FAILED.value,
    RunStatus.LOST.value,
    RunStatus.CANCELLED.value,
)
