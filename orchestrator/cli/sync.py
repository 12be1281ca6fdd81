"""``orchestrate sync [--grid NAME] [--tracking-uri URI]``: send MLflow what it is missing.

Cells and shared pretrainings log to MLflow as they train; whatever a dead server or a killed job
kept from it stays in the run directory (metrics.jsonl, result.json, artifacts) and is sent here,
incrementally: a second sync sends nothing twice. Runs of finished, failed and cancelled cells
are closed with that status. A cell's later evaluation jobs share its directory and its MLflow
run, so syncing the cell sends theirs too.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from orchestrator.cli.common import open_registry_for, require_known_grid
from sslight import ExitCode, RunDir

log = logging.getLogger(__name__)


def _has_data(run: Any) -> bool:
    paths = RunDir(run.output_dir)
    return bool(run.mlflow_run_id) or paths.metrics.exists() or paths.result.exists()


def sync_cells(registry: Any, runs: list[Any], tracking_uri: str) -> tuple[int, list[str]]:
    """Sync each cell that has something to send; return how many worked and why others did
    not (the rest are skipped once the store proves unreachable)."""
    from orchestrator.tracking.tracker import MLFLOW_STATUS, CellTracker

    todo = [run for run in runs if run.kind != "stage" and _has_data(run)]
    synced, problems = 0, []
    for i, run in enumerate(todo):
        tracker = CellTracker(registry, run.key, tracking_uri)
        status = MLFLOW_STATUS.get(run.status)
        if tracker.finish(status) if status else tracker.sync(artifacts=True):
            synced += 1
            continue
        problems.append(f"{run.name}: {tracker.last_error}")
        left = len(todo) - i - 1
        if left and "connect" in (tracker.last_error or "").lower():
            problems.append(f"the store is unreachable; {left} more runs not tried")
            break
    return synced, problems


def _sync(args: argparse.Namespace) -> int:
    from db import mask_url
    from orchestrator.tracking.tracker import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri, args.root)
    with open_registry_for(args) as registry:
        require_known_grid(registry, args.grid)
        synced, problems = sync_cells(registry, registry.runs(grid_name=args.grid), uri)
    print(f"synced {synced} runs to {mask_url(uri)}")
    for problem in problems:
        print(f"not synced: {problem}")
    return ExitCode.FAILURE if problems else ExitCode.OK


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "sync", parents=[common], help="send MLflow the metrics and artifacts it is missing"
    )
    parser.add_argument("--grid", help="only this grid")
    parser.set_defaults(handler=_sync)
