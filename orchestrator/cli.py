"""``orchestrate``: grids of runs over executors, a registry, tracking and reports.

    orchestrate grid FILE [--dry-run] [--json] [--workdir DIR] [key=value ...]

Exit codes: 0 success, 2 bad input (one message naming the file, key and problem), 1 failure.
"""

from __future__ import annotations

import argparse
import json
import sys

from orchestrator.grid import Grid, load_grid
from sslight.config import ConfigError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version="sslight-lab 0.1.0")
    commands = parser.add_subparsers(dest="command", required=True)
    grid = commands.add_parser(
        "grid",
        help="expand a grid file into runs (see experiments/table1.yaml)",
        description="Expand a grid file into its cells: one resolved run config each.",
    )
    grid.add_argument("file", help="grid YAML (format: orchestrator/grid.py)")
    grid.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="dotted overrides for every cell's run config, e.g. train.epochs=1",
    )
    grid.add_argument("--dry-run", action="store_true", help="list the cells; run nothing")
    grid.add_argument(
        "--json", action="store_true", help="with --dry-run: a JSON list, one object per cell"
    )
    grid.add_argument("--workdir", help="where cells run (default: the grid's workdir); keys stay")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)  # overrides may follow flags
    unknown = [item for item in extra if item.startswith("-") or "=" not in item]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = [*args.overrides, *extra]
    try:
        return _grid(args)
    except ConfigError as err:
        print(f"orchestrate: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _grid(args: argparse.Namespace) -> int:
    grid = load_grid(args.file, args.overrides, workdir=args.workdir)
    if not args.dry_run:
        print(
            f"orchestrate: error: running grids is not available yet; "
            f"`orchestrate grid {args.file} --dry-run` lists its {len(grid.cells)} cells",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if args.json:
        print(json.dumps([cell.to_dict() for cell in grid.cells], indent=2))
        return EXIT_OK
    print(format_table(grid))
    return EXIT_OK


def format_table(grid: Grid) -> str:
    """The cells as an aligned text table, with a one-line summary."""
    header = ("cell", "key", "method", "backbone", "policy", "output dir")
    rows = [
        (
            cell.name,
            cell.key,
            cell.config.method,
            cell.config.backbone,
            cell.config.views.policy,
            cell.output_dir,
        )
        for cell in grid.cells
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    summary = f"grid {grid.name}: {len(grid.cells)} cells in {grid.workdir}"
    if grid.duplicates:
        summary += (
            f" ({len(grid.duplicates)} duplicate cells collapsed: {', '.join(grid.duplicates)})"
        )
    return "\n".join([*lines, "", summary])


if __name__ == "__main__":
    sys.exit(main())
