"""submitit executors by name: ``local`` (subprocesses here), ``slurm``, ``debug`` (in-process)."""

from __future__ import annotations

import os
from pathlib import Path

import submitit

from orchestrator.grid.resources import Resources

EXECUTORS = ("local", "slurm", "debug")
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default (2 min) would kill real training


def local_parallelism(cores: int | None = None) -> int:
    """How many local cells run at once: one per two cores, at least one."""
    return max(1, (cores or os.cpu_count() or 1) // 2)


def make_executor(
    kind: str, folder: Path, resources: Resources, after_ok: str | None = None
) -> submitit.Executor:
    """An executor whose jobs ask for ``resources`` and log under ``folder``; on SLURM, with
    ``after_ok``, they start only once that job has completed successfully (``afterok``)."""
    folder = Path(folder)
    if kind == "debug":
        return submitit.DebugExecutor(folder=folder)
    if kind == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(
            timeout_min=max(resources.time_min, LOCAL_TIMEOUT_MIN),
            tasks_per_node=resources.tasks_per_node,
            gpus_per_node=resources.gpus_per_node,
        )
        return executor
    if kind == "slurm":
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params = {
            "timeout_min": resources.time_min,
            "nodes": resources.nodes,
            "tasks_per_node": resources.tasks_per_node,
            "cpus_per_task": resources.cpus_per_task,
            "gpus_per_node": resources.gpus_per_node,
            "slurm_signal_delay_s": 120,
        }
        if resources.partition:
            params["slurm_partition"] = resources.partition
        if resources.mem_gb:
            params["mem_gb"] = resources.mem_gb
        if after_ok:
            params["slurm_additional_parameters"] = {"dependency": f"afterok:{after_ok}"}
        executor.update_parameters(**params)
        return executor
    raise ValueError(f"unknown executor {kind!r}; choose one of: {', '.join(EXECUTORS)}")
