"""``orchestrate resume [--grid NAME] [--failed]``: submit failed, lost and cancelled cells again.

A search's trials are its study's to rerun: ``orchestrate search FILE`` continues it.
"""

from __future__ import annotations

import argparse
from typing import Any

from db import RunStatus
from orchestrator.cli.common import (
    open_registry_for,
    print_status,
    require_known_grid,
    tracking_uri_for,
)
from orchestrator.execution.executors import EXECUTORS


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    resume = commands.add_parser("resume", parents=[common], help="resubmit failed/lost cells")
    resume.add_argument("--grid", help="only this grid")
    resume.add_argument("--failed", action="store_true", help="only failed cells (not lost)")
    resume.add_argument("--executor", choices=EXECUTORS, default="local")
    resume.add_argument("--parallel", type=int, help="local: cells at once (default: cores / 2)")
    resume.add_argument("--wait", action="store_true", help="slurm: wait until every job ends")
    resume.set_defaults(handler=resume_cells)


def resume_cells(args: argparse.Namespace) -> int:
    from orchestrator.execution.reconcile import reconcile
    from orchestrator.execution.submit import RESUMABLE, submit
    from orchestrator.grid.resources import stage_resources_from_spec

    statuses = (RunStatus.FAILED,) if args.failed else RESUMABLE
    with open_registry_for(args) as registry:
        require_known_grid(registry, args.grid)
        reconcile(registry, args.grid)
        grids = {g.name: g for g in registry.grids() if args.grid in (None, g.name)}
        submitted = []
        for name, grid in grids.items():
            if grid.spec.get("kind") == "search":  # trials are the study's to rerun
                print(f"search {name}: continue it with `orchestrate search {grid.source}`")
                continue
            submitted.extend(
                submit(
                    registry,
                    chain_keys(registry, name),
                    grid.workdir,
                    args.executor,
                    statuses=(RunStatus.PENDING, *statuses),
                    parallel=args.parallel,
                    tracking_uri=tracking_uri_for(args),
                    default_resources=stage_resources_from_spec(grid.spec.get("resources")).default,
                )
            )
        print(f"resumed {len(submitted)} jobs")
        if args.executor == "slurm" and args.wait:
            from orchestrator.execution.waiting import wait_for_jobs

            wait_for_jobs(registry, submitted)
        return print_status(registry, args.grid, as_json=False)


def chain_keys(registry: Any, grid: str) -> list[str]:
    """The jobs of ``grid``'s cells, the pretrainings they wait for first (shared ones too,
    whichever grid registered them); held jobs of a dead pretraining are released first."""
    from orchestrator.execution.reconcile import release_blocked

    runs = registry.runs(grid_name=grid)
    release_blocked(registry, runs)
    upstream = sorted({r.depends_on for r in runs if r.depends_on})
    own = [r.key for r in runs if r.key not in upstream]
    return [*upstream, *own]
