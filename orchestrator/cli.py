"""``orchestrate``: grids of runs on an executor, recorded in a registry.

    orchestrate grid FILE [--executor local|slurm|debug] [--dry-run] [--json] [--workdir DIR]
                          [--wait] [key=value ...]
    orchestrate status [--grid NAME] [--json]
    orchestrate resume [--grid NAME] [--failed] [--executor ...]
    orchestrate cancel [--grid NAME]
    orchestrate report [--grid NAME] [--out DIR]
    orchestrate sync [--grid NAME]               send MLflow what it is missing
    orchestrate ui [--port P] [--grid NAME] [--optuna STORAGE]

The registry is ``<root>/registry.db`` (``--root``, default ``runs``), or ``--db URL`` /
``$SSLIGHT_DB_URL`` for any SQLAlchemy URL. Cells are tracked in MLflow at ``--tracking-uri`` /
``$MLFLOW_TRACKING_URI``, else ``<root>/mlflow.db``. Exit codes: 0 success, 2 bad input (one
message naming the file, key and problem), 1 failure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from orchestrator.executors import EXECUTORS
from orchestrator.grid import Grid, load_grid
from sslight import ConfigError, ExitCode

# Commands living in their own modules: each has ``add_command(commands, common)``, which adds
# its subparser and sets ``handler`` (a function of the parsed args returning the exit code).
COMMAND_MODULES: tuple[str, ...] = (
    "orchestrator.cmd_report",
    "orchestrator.cmd_sync",
    "orchestrator.cmd_ui",
    "orchestrator.cmd_search",
    "orchestrator.cmd_export",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrate", description=__doc__.split("\n\n")[0])
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

    grid = commands.add_parser("grid", parents=[common], help="run a grid file's cells")
    grid.add_argument("file", help="grid YAML (format: orchestrator/grid.py)")
    grid.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="dotted overrides for every cell's run config, e.g. train.epochs=1",
    )
    grid.add_argument("--executor", choices=EXECUTORS, default="local")
    grid.add_argument("--dry-run", action="store_true", help="list the cells; run nothing")
    grid.add_argument("--json", action="store_true", help="with --dry-run: a JSON list of cells")
    grid.add_argument("--workdir", help="where cells run (default: the grid's workdir); keys stay")
    grid.add_argument("--wait", action="store_true", help="slurm: wait until every job ends")
    grid.add_argument("--parallel", type=int, help="local: cells at once (default: cores / 2)")

    status = commands.add_parser("status", parents=[common], help="the cells and their state")
    status.add_argument("--grid", help="only this grid")
    status.add_argument("--json", action="store_true")

    resume = commands.add_parser("resume", parents=[common], help="resubmit failed/lost cells")
    resume.add_argument("--grid", help="only this grid")
    resume.add_argument("--failed", action="store_true", help="only failed cells (not lost)")
    resume.add_argument("--executor", choices=EXECUTORS, default="local")
    resume.add_argument("--parallel", type=int, help="local: cells at once (default: cores / 2)")

    cancel = commands.add_parser("cancel", parents=[common], help="stop a grid's active jobs")
    cancel.add_argument("--grid", help="only this grid")

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_command(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
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
        handler = getattr(args, "handler", None) or COMMANDS[args.command]
        return handler(args)
    except (ConfigError, RegistryError) as err:
        print(f"orchestrate: error: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print("orchestrate: interrupted; `orchestrate resume` continues", file=sys.stderr)
        return ExitCode.INTERRUPTED


def _registry(args: argparse.Namespace):
    from db import open_registry, resolve_url

    registry = open_registry(resolve_url(args.db, args.root))
    if registry.migrated:
        logging.getLogger(__name__).info("registry %s: schema migrated to head", registry)
    return registry


def _tracking_uri(args: argparse.Namespace) -> str:
    from orchestrator.tracking import resolve_tracking_uri

    return resolve_tracking_uri(args.tracking_uri, args.root)


def _grid(args: argparse.Namespace) -> int:
    grid = load_grid(args.file, args.overrides, workdir=args.workdir)
    if args.dry_run:
        if args.json:
            print(json.dumps([cell.to_dict() for cell in grid.cells], indent=2))
        else:
            print(format_cells(grid))
        return ExitCode.OK
    from orchestrator.submit import grid_cells, register_grid, submit

    with _registry(args) as registry:
        register_grid(registry, grid)
        submitted = submit(
            registry,
            grid_cells(grid),
            grid.workdir,
            grid.resources,
            args.executor,
            parallel=args.parallel,
            tracking_uri=_tracking_uri(args),
        )
        print(
            f"grid {grid.name}: submitted {len(submitted)} of {len(grid.cells)} cells "
            f"({args.executor})"
        )
        if args.executor == "slurm" and args.wait:
            for sub in submitted:
                sub.job.wait()
        return _print_status(registry, grid.name, as_json=False)


def _print_status(registry, grid: str | None, as_json: bool) -> int:
    from orchestrator.reconcile import reconcile
    from orchestrator.status import format_rows, status_rows

    reconcile(registry, grid)
    rows = status_rows(registry, grid)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(format_rows(rows) if rows else "no cells registered")
    return ExitCode.FAILURE if any(r["status"] in ("failed", "lost") for r in rows) else ExitCode.OK


def _status(args: argparse.Namespace) -> int:
    with _registry(args) as registry:
        _print_status(registry, args.grid, args.json)
    return ExitCode.OK


def _resume(args: argparse.Namespace) -> int:
    from orchestrator.grid import Resources
    from orchestrator.reconcile import reconcile
    from orchestrator.submit import CellSpec, submit

    statuses = ("failed",) if args.failed else ("failed", "lost", "cancelled")
    with _registry(args) as registry:
        reconcile(registry, args.grid)
        grids = {g.name: g for g in registry.grids() if args.grid in (None, g.name)}
        if args.grid and not grids:
            raise ConfigError("command line", "--grid", f"no grid named {args.grid!r} registered")
        total = 0
        for name, grid in grids.items():
            if grid.spec.get("kind") == "search":  # trials are the study's to rerun
                print(f"search {name}: continue it with `orchestrate search {grid.source}`")
                continue
            runs = registry.runs(grid_name=name, statuses=statuses)
            cells = [CellSpec(r.key, r.name, r.config) for r in runs]
            resources = Resources(**grid.spec.get("resources", {}))
            total += len(
                submit(
                    registry,
                    cells,
                    grid.workdir,
                    resources,
                    args.executor,
                    statuses=statuses,
                    parallel=args.parallel,
                    tracking_uri=_tracking_uri(args),
                )
            )
        print(f"resumed {total} cells")
        return _print_status(registry, args.grid, as_json=False)


def _cancel(args: argparse.Namespace) -> int:
    from orchestrator.reconcile import cancel

    with _registry(args) as registry:
        print(f"cancelled {len(cancel(registry, args.grid))} cells")
    return ExitCode.OK


COMMANDS = {"grid": _grid, "status": _status, "resume": _resume, "cancel": _cancel}


def format_cells(grid: Grid) -> str:
    """A grid's cells as an aligned table, with a one-line summary."""
    from orchestrator.status import align

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


if __name__ == "__main__":
    sys.exit(main())
