"""``orchestrate``: grids of runs on an executor, recorded in a registry.

    orchestrate grid FILE [--executor local|slurm|debug] [--dry-run] [--json] [--workdir DIR]
                          [--wait] [key=value ...]
    orchestrate status [--grid NAME] [--json]
    orchestrate resume [--grid NAME] [--failed] [--executor ...]
    orchestrate cancel [--grid NAME]
    orchestrate report [--grid NAME] [--out DIR]
    orchestrate sync [--grid NAME]               send MLflow what it is missing
    orchestrate ui [--port P] [--grid NAME] [--optuna STORAGE]
    orchestrate search FILE [--trials N] [--workers N] [key=value ...]
    orchestrate export [--grid NAME] [CELL ...] [--out DIR]

The registry is ``<root>/registry.db`` (``--root``, default ``runs``), or ``--db URL`` /
``$SSLIGHT_DB_URL`` for any SQLAlchemy URL. Cells are tracked in MLflow at ``--tracking-uri`` /
``$MLFLOW_TRACKING_URI``, else ``<root>/mlflow.db``. Exit codes: 0 success, 2 bad input (one
message naming the file, key and problem), 1 failure, 130 interrupted (``sslight.ExitCode``).

Each command is one module of this package with ``add_command(commands, common)``, which adds
its subparser and sets ``handler`` (a function of the parsed args returning the exit code);
``COMMANDS`` lists them in the order ``--help`` shows.
"""

from __future__ import annotations

import argparse
import logging
import sys

from orchestrator.cli import cancel, export, grid, report, resume, search, status, sync, ui
from sslight import ConfigError, ExitCode

COMMANDS = (grid, status, resume, cancel, report, sync, ui, search, export)
_DESCRIPTION = __doc__.split("\n\n")[0].replace("``", "")  # --help prints plain text, not reST


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrate", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version="sslight-lab 0.1.0")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default="runs", help="where the default registry lives")
    common.add_argument("--db", help="registry URL (default: sqlite:///<root>/registry.db)")
    common.add_argument(
        "--tracking-uri",
        help="MLflow store: server URL or SQLite file "
        "(default: $MLFLOW_TRACKING_URI, else sqlite:///<root>/mlflow.db)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_command(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``orchestrate`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)  # overrides may follow flags
    unknown = [item for item in extra if item.startswith("-") or "=" not in item]
    if unknown or (extra and not hasattr(args, "overrides")):  # grid, search take key=value
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if hasattr(args, "overrides"):
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter on every open
    from db import RegistryError

    try:
        return args.handler(args)
    except (ConfigError, RegistryError) as err:
        print(f"orchestrate: error: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print("orchestrate: interrupted; `orchestrate resume` continues", file=sys.stderr)
        return ExitCode.INTERRUPTED
