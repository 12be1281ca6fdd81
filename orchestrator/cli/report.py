"""``orchestrate report [--grid NAME] [--out DIR]``: the paper's tables and plots of grids.

Prints the Markdown tables and writes ``report.md``, ``report.html`` (self-contained) and PNGs to
``--out`` (default ``<grid workdir>/report`` for one grid, ``<root>/report`` for all).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.cli.common import open_registry_for, require_known_grid
from sslight import ConfigError, ExitCode, RunDir


def add_command(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "report", parents=[common], help="the paper's tables and plots from the registry"
    )
    parser.add_argument("--grid", help="only this grid (default: every grid, one section each)")
    parser.add_argument(
        "--out", help="output folder (default: <grid workdir>/report or <root>/report)"
    )
    parser.set_defaults(handler=report)


def report(args: argparse.Namespace) -> int:
    from dashboards.report import RunFiles, write_report
    from db import mask_url
    from orchestrator.execution.reconcile import reconcile
    from orchestrator.execution.shared_pretraining import cell_metrics
    from orchestrator.search import report_section  # noqa: F401  (registers the search section)

    with open_registry_for(args) as registry:
        grids = registry.grids()
        if not grids:
            raise ConfigError(
                "command line",
                "",
                f"no grids in the registry {mask_url(registry.url)}; run `orchestrate grid FILE` "
                "first, or point --root/--db at the registry that has them",
            )
        require_known_grid(registry, args.grid)
        grids = [g for g in grids if args.grid in (None, g.name)]
        reconcile(registry, args.grid)  # runs whose jobs died show as lost, not running
        if args.out:
            out = Path(args.out)
        elif len(grids) == 1 and args.grid is not None:
            out = Path(grids[0].workdir) / "report"
        else:
            out = Path(args.root) / "report"
        files = RunFiles(
            metrics=lambda run: cell_metrics(run.output_dir),
            report_dir=lambda run: RunDir(run.output_dir).report,
        )
        written = write_report(registry, grids, out, files)
    print(written.markdown)
    print(f"report: {written.markdown_path} and {written.html_path}")
    print(f"plots: {len(written.images)} in {out}", end="")
    if written.cell_images:
        print(f"; training curves of {len(written.cell_images)} cells in <output_dir>/report/")
    else:
        print()
    return ExitCode.OK
