"""``orchestrate cancel [--grid NAME]``: stop a grid's active jobs."""

from __future__ import annotations

import argparse
from typing import Any

from orchestrator.cli.common import open_registry_for, require_known_grid
from sslight import ExitCode


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    cancel = commands.add_parser("cancel", parents=[common], help="stop a grid's active jobs")
    cancel.add_argument("--grid", help="only this grid")
    cancel.set_defaults(handler=cancel_cells)


def cancel_cells(args: argparse.Namespace) -> int:
    from orchestrator.execution.reconcile import cancel

    with open_registry_for(args) as registry:
        require_known_grid(registry, args.grid)
        print(f"cancelled {len(cancel(registry, args.grid))} cells")
    return ExitCode.OK
