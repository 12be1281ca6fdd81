"""What ``orchestrate grid FILE --dry-run`` shows of the stage plan before anything runs.

Per job: its stages, the pretraining it waits for, its resources, whether it is new, already
registered (and in which state) or a pretraining another grid registered (shared), and the
GPU-hours it reserves (its GPUs for its whole time limit). Jobs already finished or in flight
are not submitted again and reserve nothing.
"""

from __future__ import annotations

from typing import Any

from orchestrator.execution.plan import PRETRAINING, StageJob, plan_grid
from orchestrator.execution.status import align
from orchestrator.grid.spec import Grid

NOT_RESUBMITTED = ("finished", "submitted", "running")


def plan_rows(grid: Grid, registry: Any | None = None) -> list[dict[str, Any]]:
    """One row per job of ``grid``'s plan, as the registry at hand would submit it."""
    existing = _registered(grid, registry)
    shared = {r.pretrain_key: r.output_dir for r in existing.values() if r.kind == PRETRAINING}
    rows = []
    for job in plan_grid(grid, shared):
        run = existing.get(job.key)
        state = "new" if run is None else str(run.status)
        if run is not None and run.kind == PRETRAINING and run.grid != grid.name:
            state = f"shared ({run.grid}: {run.status})"
        submitted = run is None or str(run.status) not in NOT_RESUBMITTED
        rows.append(_row(job, state, submitted))
    return rows


def _registered(grid: Grid, registry: Any | None) -> dict[str, Any]:
    if registry is None:
        return {}
    keys = [job.key for job in plan_grid(grid)]
    return {run.key: run for run in registry.runs(keys=keys)}


def _row(job: StageJob, state: str, submitted: bool) -> dict[str, Any]:
    resources = job.resources
    return {
        "job": job.key,
        "name": job.name,
        "kind": job.kind,
        "stages": list(job.stages),
        "cell_key": job.cell_key,
        "pretrain_key": job.pretrain_key,
        "depends_on": job.depends_on,
        "state": state,
        "submit": submitted,
        "resources": resources.model_dump(),
        "gpu_hours": round(resources.gpu_hours, 2) if submitted else 0.0,
    }


def cell_plans(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each cell's jobs (its pretraining first) by cell key: ``--dry-run --json``'s
    ``stage_plan``."""
    pretrainings = {row["job"]: row for row in rows if row["kind"] == PRETRAINING}
    plans: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["cell_key"] is None:
            continue
        plan = plans.setdefault(row["cell_key"], [])
        if not plan and row["depends_on"] in pretrainings:
            plan.append(pretrainings[row["depends_on"]])
        plan.append(row)
    return plans


def format_plan(rows: list[dict[str, Any]]) -> str:
    """The plan as an aligned table and a summary of jobs and reserved GPU-hours."""
    header = ["job", "stages", "waits for", "GPUs", "time (min)", "GPU-h", "state"]
    table = [header]
    for row in rows:
        res = row["resources"]
        table.append(
            [
                row["name"],
                "+".join(row["stages"]) or "(link)",
                row["depends_on"] or "-",
                str(res["nodes"] * res["gpus_per_node"]),
                str(res["time_min"]),
                f"{row['gpu_hours']:g}",
                row["state"],
            ]
        )
    to_submit = [row for row in rows if row["submit"]]
    pretrainings = sum(row["kind"] == PRETRAINING for row in to_submit)
    hours = sum(row["gpu_hours"] for row in to_submit)
    summary = (
        f"stage plan: {len(to_submit)} of {len(rows)} jobs to submit ({pretrainings} "
        f"pretrainings, {len(to_submit) - pretrainings} evaluations); they reserve "
        f"{hours:g} GPU-hours (GPUs x time limit)"
    )
    return "\n".join([*align(table), "", summary])
