"""``orchestrate grid FILE [key=value ...]``: register a grid file's cells and run them."""

from __future__ import annotations

import argparse
import json
from typing import Any

from orchestrator.cli.common import (
    add_file_and_overrides,
    existing_registry,
    open_registry_for,
    print_status,
    tracking_uri_for,
)
from orchestrator.execution.executors import EXECUTORS
from orchestrator.grid.spec import Grid, load_grid
from sslight import ExitCode


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    grid = commands.add_parser("grid", parents=[common], help="run a grid file's cells")
    add_file_and_overrides(
        grid,
        "grid YAML (format: orchestrator/grid/spec.py)",
        "dotted overrides for every cell's run config, e.g. train.epochs=1",
    )
    grid.add_argument("--executor", choices=EXECUTORS, default="local")
    grid.add_argument("--dry-run", action="store_true", help="list the cells; run nothing")
    grid.add_argument("--json", action="store_true", help="with --dry-run: a JSON list of cells")
    grid.add_argument("--workdir", help="where cells run (default: the grid's workdir); keys stay")
    grid.add_argument("--wait", action="store_true", help="slurm: wait until every job ends")
    grid.add_argument("--parallel", type=int, help="local: cells at once (default: cores / 2)")
    grid.set_defaults(handler=run_grid)


def run_grid(args: argparse.Namespace) -> int:
    grid = load_grid(args.file, args.overrides, workdir=args.workdir)
    if args.dry_run:
        return dry_run(args, grid)
    from orchestrator.execution.submit import register_grid, submit
    from orchestrator.grid.preflight import preflight

    preflight(grid)
    with open_registry_for(args) as registry:
        keys = register_grid(registry, grid)
        submitted = submit(
            registry,
            keys,
            grid.workdir,
            args.executor,
            parallel=args.parallel,
            tracking_uri=tracking_uri_for(args),
            default_resources=grid.resources.default,
        )
        print(
            f"grid {grid.name}: submitted {len(submitted)} of {len(keys)} jobs for "
            f"{len(grid.cells)} cells ({args.executor})"
        )
        if args.executor == "slurm" and args.wait:
            from orchestrator.execution.waiting import wait_for_jobs

            wait_for_jobs(registry, submitted)
        return print_status(registry, grid.name, as_json=False)


def dry_run(args: argparse.Namespace, grid: Grid) -> int:
    """The cells and their stage plan, as the registry at hand (if there is one) would run it;
    nothing is registered or submitted."""
    from orchestrator.execution.plan_view import cell_plans, format_plan, plan_rows

    with existing_registry(args) as registry:
        rows = plan_rows(grid, registry)
    if args.json:
        plans = cell_plans(rows)
        cells = [{**c.to_dict(), "stage_plan": plans.get(c.key, [])} for c in grid.cells]
        print(json.dumps(cells, indent=2))
    else:
        print(format_cells(grid) + "\n\n" + format_plan(rows))
    return ExitCode.OK


def format_cells(grid: Grid) -> str:
    """A grid's cells as an aligned table, with a one-line summary."""
    from orchestrator.execution.status import align

    header = ["cell", "key", "method", "backbone", "policy", "output dir"]
    rows = [
        [c.name, c.key, c.config.method, c.config.backbone, c.config.views.policy, c.output_dir]
        for c in grid.cells
    ]
    summary = f"grid {grid.name}: {len(grid.cells)} cells in {grid.workdir}"
    if grid.duplicates:
        summary += (
            f" ({len(grid.duplicates)} duplicate cells collapsed: {', '.join(grid.duplicates)})"
        )
    return "\n".join([*align([header, *rows]), "", summary])
