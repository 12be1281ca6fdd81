"""Pre-flight at submission: every path a grid's cells will read exists as their jobs expect it.

``orchestrate grid`` (unless ``--dry-run``) and ``orchestrate search`` call this after the file
is validated and before anything is registered or submitted, so that a missing ImageNet root,
COCO annotation file, semi-supervised split file or ``init.weights`` folder is exit 2 on the
submitting host instead of a failed job after its wait in the queue. Which paths a config reads
and what each must hold is sslight's (``sslight.input_paths``); this module checks each distinct
path once, however many cells share it, and names the first cell that reads it:

    experiments/table1.yaml: cell dino-resnet18-sslight: data.root: /data/imagenet has no train/
    folder (expected ROOT/train/<class>/*.JPEG|jpg|png and ROOT/val/<class>/*)

The jobs check their paths again when they start (they may run where other paths are mounted).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sslight import ConfigError, input_paths

if TYPE_CHECKING:
    from orchestrator.grid.spec import Grid


def preflight(grid: Grid) -> None:
    """Raise ``ConfigError`` for the first missing or misshapen path a cell of ``grid`` reads."""
    check_paths(str(grid.path), ((f"cell {cell.name}", cell.config) for cell in grid.cells))


def check_paths(source: str, configs: Iterable[tuple[str, Any]]) -> None:
    """Check the input paths of each ``(label, run config)`` once per distinct path; the error
    reads ``<source>: <label>: <config key>: <problem>`` for the first config reading it."""
    checked: set[Any] = set()
    for label, cfg in configs:
        for item in input_paths(cfg):
            if item in checked:
                continue
            checked.add(item)
            problem = item.problem()
            if problem:
                raise ConfigError(f"{source}: {label}", item.key, problem)
