"""``orchestrate status``: one row per cell with its state, stage, attempts and key metrics."""

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


def status_rows(registry: Registry, grid: str | None = None) -> list[dict[str, Any]]:
    """One row per run (one registry query, whatever the number of runs)."""
    rows = []
    for run in registry.run_summaries(grid, METRICS):
        rows.append(
            {
                "grid": run["grid"],
                "cell": run["name"],
                "key": run["key"],
                "status": run["status"],
                "stage": run["stage"],
                "attempts": run["attempts"],
                **{metric: run[metric] for metric in METRICS},
                "error": run["error"],
                "output_dir": run["output_dir"],
            }
        )
    return rows


def align(table: list[list[str]]) -> list[str]:
    """Left-aligned columns, the first row a header underlined with dashes."""
    widths = [max(map(len, column)) for column in zip(*table, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_rows(rows: list[dict[str, Any]]) -> str:
    """An aligned text table (metrics shown only where some cell has them)."""
    metrics = [m for m in METRICS if any(row[m] is not None for row in rows)]
    header = ["grid", "cell", "status", "stage", "attempts", *metrics]
    table = [header]
    for row in rows:
        cells = [row["grid"], row["cell"], row["status"], row["stage"] or "-", str(row["attempts"])]
        cells += [f"{row[m]:.1f}" if row[m] is not None else "-" for m in metrics]
        table.append(cells)
    lines = align(table)
    errors = [f"  {row['cell']}: {row['error']}" for row in rows if row["error"]]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return "\n".join([*lines, "", f"{len(rows)} cells: {summary}", *errors])
