"""``orchestrate export [--grid NAME] [CELL ...] [--out DIR]``: cells' backbones as torchvision /
timm state dicts (sslight/weights/export.py), e.g. for cells pretrained before the pipeline wrote
``export/`` itself, or to gather a grid's backbones in one folder.

A cell is exportable once its pretraining is done, or when it evaluates ``init.weights`` (then its
export is those weights converted, e.g. a seed checkpoint in the torchvision layout). Each goes to
``<cell output_dir>/export/backbone.pt`` (+ ``backbone.json``), or ``DIR/<grid>/<cell>.pt`` with
``--out DIR``. Naming a cell (its name or key) that cannot be exported is an error (exit 2);
without names, the cells not yet pretrained are listed as skipped.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from orchestrator.cli.common import open_registry_for, require_known_grid
from sslight import ConfigError, ExitCode


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "export", parents=[common], help="write cells' backbones as torchvision/timm state dicts"
    )
    parser.add_argument("cells", nargs="*", metavar="CELL", help="cell names or keys (default all)")
    parser.add_argument("--grid", help="only this grid")
    parser.add_argument("--out", help="folder for <grid>/<cell>.pt (default: each cell's export/)")
    parser.set_defaults(handler=export_cells)


def _exportable(run: Any) -> bool:
    from sslight import RunDir

    stages = RunDir(run.output_dir).read_result().get("stages", {})
    pretrained = stages.get("pretrain", {}).get("status") == "done"
    return pretrained or bool((run.config.get("init") or {}).get("weights"))


def _select(runs: list[Any], names: list[str]) -> list[Any]:
    if not names:
        return runs
    chosen = []
    for name in names:
        found = [r for r in runs if name in (r.name, r.key)]
        if not found:
            known = ", ".join(r.name for r in runs[:10]) or "none"
            raise ConfigError("command line", "CELL", f"no cell {name!r}; cells: {known}")
        chosen.extend(found)
    return chosen


def export_cells(args: argparse.Namespace) -> int:
    from orchestrator.execution.status import align
    from sslight import export_run, resolve

    with open_registry_for(args) as registry:
        require_known_grid(registry, args.grid)
        runs = _select(registry.runs(grid_name=args.grid, kinds=("cell",)), args.cells)
    rows, exported = [["grid", "cell", "export"]], 0
    for run in runs:
        if not _exportable(run):
            if args.cells:
                raise ConfigError(
                    "command line", "CELL", f"{run.name}: not pretrained yet ({run.status})"
                )
            rows.append([run.grid, run.name, f"skipped ({run.status}, not pretrained)"])
            continue
        cfg = resolve({**run.config, "output_dir": run.output_dir}, source=f"cell {run.name}")
        out = Path(args.out) / run.grid / f"{run.name}.pt" if args.out else None
        written = export_run(run.output_dir, out, cfg=cfg)
        rows.append([run.grid, run.name, str(written)])
        exported += 1
    print("\n".join(align(rows)) if len(rows) > 1 else "no cells registered")
    return ExitCode.OK if exported else ExitCode.FAILURE
