"""``orchestrate status [--grid NAME] [--json]``: the cells and their state."""

from __future__ import annotations

import argparse
from typing import Any

from orchestrator.cli.common import open_registry_for, print_status, require_known_grid
from sslight import ExitCode


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    status = commands.add_parser("status", parents=[common], help="the cells and their state")
    status.add_argument("--grid", help="only this grid")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=show_status)


def show_status(args: argparse.Namespace) -> int:
    with open_registry_for(args) as registry:
        require_known_grid(registry, args.grid)
        print_status(registry, args.grid, args.json)
    return ExitCode.OK
