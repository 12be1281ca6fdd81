"""``orchestrate grid --wait`` on SLURM: wait until each submitted job has ended, or is held
behind a pretraining that will never finish (SLURM keeps such a job pending with
``DependencyNeverSatisfied``; ``orchestrate status`` calls it blocked, ``resume`` reruns it)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from db import Registry, RunStatus
from orchestrator.execution.submit import DEAD, Submission

POLL_S = 2.0


def wait_for_jobs(
    registry: Registry, submitted: Sequence[Submission], every: float = POLL_S
) -> None:
    """Return once every job of ``submitted`` is done or blocked."""
    by_key = {sub.key: sub for sub in submitted}
    waiting = list(submitted)
    while waiting:
        waiting = [sub for sub in waiting if not _settled(registry, sub, by_key)]
        if waiting:
            time.sleep(every)


def _settled(registry: Registry, sub: Submission, by_key: dict[str, Submission]) -> bool:
    if sub.job.done():
        return True
    run = registry.run(sub.key)
    if run is None or not run.depends_on:
        return False
    upstream = registry.run(run.depends_on)
    if upstream is None or upstream.status in DEAD:
        return True
    handle = by_key.get(upstream.key)  # ended without recording it (killed): it never will
    return handle is not None and handle.job.done() and upstream.status != RunStatus.FINISHED
