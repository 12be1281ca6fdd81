"""``orchestrate status``: one row per cell with its state, its stages' states, attempts and key
metrics.

A cell is several jobs (``orchestrator/execution/plan.py``): the pretraining it shares, its own
evaluation job and further stage jobs. Its row gathers them: ``stages`` maps each stage to the
state of the job that runs it, and a job whose pretraining failed, was cancelled or was lost is
``blocked`` (``error`` says ``blocked: pretrain <key> failed``), also while SLURM holds it
pending with ``DependencyNeverSatisfied``.
"""

from __future__ import annotations

from typing import Any

from db import Registry

# k-NN beside what a random-init backbone and raw pixels score (sslight/evaluation/floors.py)
METRICS = (
    "knn_top1",
    "knn_floor_random_top1",
    "knn_floor_pixels_top1",
    "linear_top1",
    "semi_1_top1",
    "semi_10_top1",
)
DEAD = ("failed", "lost", "cancelled")
WAITING = ("pending", "submitted")
# a cell's state from its jobs': the first of these that one of them is in
PRECEDENCE = ("running", "submitted", "failed", "lost", "blocked", "cancelled", "pending")


def status_rows(registry: Registry, grid: str | None = None) -> list[dict[str, Any]]:
    """One row per cell (two registry queries, whatever the number of cells)."""
    jobs = registry.run_summaries(grid, METRICS)
    upstream_keys = {j["depends_on"] for j in jobs if j["depends_on"]}
    known = {j["key"]: j for j in jobs}
    missing = upstream_keys - known.keys()
    if missing:
        known.update({j["key"]: j for j in registry.run_summaries(None, (), keys=missing)})
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        if job["kind"] == "stage" and job["parent_key"]:
            by_cell.setdefault(job["parent_key"], []).append(job)
    return [
        _cell_row(job, by_cell.get(job["key"], []), known.get(job["depends_on"] or ""))
        for job in jobs
        if job["kind"] == "cell"
    ]


def _job_state(job: dict[str, Any], upstream: dict[str, Any] | None) -> tuple[str, str | None]:
    """A job's state and error; waiting on a dead pretraining is ``blocked``."""
    if upstream is not None and job["status"] in WAITING and upstream["status"] in DEAD:
        return "blocked", f"blocked: pretrain {upstream['pretrain_key']} {upstream['status']}"
    return job["status"], job["error"]


def _cell_row(
    cell: dict[str, Any], stage_jobs: list[dict[str, Any]], upstream: dict[str, Any] | None
) -> dict[str, Any]:
    stages: dict[str, str] = {}
    states, errors = [], []
    if upstream is not None:
        stages["pretrain"] = upstream["status"]
        states.append(upstream["status"])
        if upstream["error"] and upstream["status"] in DEAD:
            errors.append(f"pretrain {upstream['pretrain_key']}: {upstream['error']}")
    for job in [cell, *stage_jobs]:
        state, error = _job_state(job, upstream)
        states.append(state)
        if error:
            errors.append(error)
        stages.update(_stage_states(job, state))
    running = [j["stage"] for j in [cell, *stage_jobs] if j["stage"]]
    return {
        "grid": cell["grid"],
        "cell": cell["name"],
        "key": cell["key"],
        "pretrain_key": cell["pretrain_key"],
        "status": _overall(states),
        "stage": ", ".join(running) or None,
        "stages": stages,
        "attempts": sum(j["attempts"] for j in [cell, *stage_jobs])
        + (upstream["attempts"] if upstream else 0),
        **{metric: cell[metric] for metric in METRICS},
        "error": "; ".join(dict.fromkeys(errors)) or None,
        "output_dir": cell["output_dir"],
    }


def _stage_states(job: dict[str, Any], state: str) -> dict[str, str]:
    """Each stage of ``job`` with the job's state; while it runs, stages before the current
    one are finished and those after it pending."""
    stages = list(job["stages"] or [])
    if state != "running" or job["stage"] not in stages:
        return {stage: state for stage in stages}
    current = stages.index(job["stage"])
    return {
        stage: "finished" if i < current else "running" if i == current else "pending"
        for i, stage in enumerate(stages)
    }


def _overall(states: list[str]) -> str:
    for state in PRECEDENCE:
        if state in states:
            return state
    return "finished"


def align(table: list[list[str]]) -> list[str]:
    """Left-aligned columns, the first row a header underlined with dashes."""
    widths = [max(map(len, column)) for column in zip(*table, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_rows(rows: list[dict[str, Any]]) -> str:
    """An aligned text table (metrics shown only where some cell has them)."""
    metrics = [m for m in METRICS if any(row[m] is not None for row in rows)]
    header = ["grid", "cell", "status", "stage", "attempts", *metrics, "stages"]
    table = [header]
    for row in rows:
        cells = [row["grid"], row["cell"], row["status"], row["stage"] or "-", str(row["attempts"])]
        cells += [f"{row[m]:.1f}" if row[m] is not None else "-" for m in metrics]
        cells.append(" ".join(f"{stage}:{state}" for stage, state in row["stages"].items()))
        table.append(cells)
    lines = align(table)
    errors = [f"  {row['cell']}: {row['error']}" for row in rows if row["error"]]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return "\n".join([*lines, "", f"{len(rows)} cells: {summary}", *errors])
