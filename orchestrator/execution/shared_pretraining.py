"""A cell's view of the pretraining it shares: a ``pretrain`` link and its results.

An evaluation job starts from the weights of a pretraining that may serve cells of several
grids (``orchestrator/execution/plan.py``). Before its stages run, the cell's directory gets a
symbolic link ``pretrain -> <the pretraining's directory>`` (its checkpoints, metrics.jsonl and
report), the pretraining's ``export/`` (hard-linked weights; the sidecar becomes the cell's) and
the pretraining's results in its own result.json, so a cell's directory tells its
whole story: ``stages.pretrain`` is ``{"status": "done", "seconds": ..., "shared": <dir>}``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from sslight import RunDir

LINK = "pretrain"


def pretraining_of(config: dict[str, Any], depends_on: str | None) -> Path | None:
    """The pretraining directory an evaluation job's config starts from, if it has one."""
    if not depends_on:
        return None
    weights = (config.get("init") or {}).get("weights")
    return Path(weights) if weights else None


def link_pretraining(cell_dir: str | Path, pretraining: str | Path) -> dict[str, Any]:
    """Link ``pretraining`` into ``cell_dir`` and merge its results into the cell's
    result.json (its own stages and errors stay); return the merged result."""
    cell, source = RunDir(cell_dir), RunDir(pretraining)
    cell.root.mkdir(parents=True, exist_ok=True)
    link = cell.root / LINK
    if not link.is_symlink() and not link.exists():
        link.symlink_to(source.root.resolve(), target_is_directory=True)
    if source.export.is_dir() and not cell.export.exists():  # its own sidecar, same weights
        shutil.copytree(source.export, cell.export, copy_function=_link_or_copy)
    done = source.read_result()
    stages = dict(cell.read_result().get("stages", {}))
    if "pretrain" in done.get("stages", {}):
        stages["pretrain"] = {**done["stages"]["pretrain"], "shared": str(source.root)}
    values = {k: v for k, v in done.items() if k not in ("stages", "error")}
    return cell.update_result({**values, "stages": stages})


def _link_or_copy(source: str, target: str) -> None:
    """A hard link where the file system allows one (the weights exist once), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def cell_metrics(cell_dir: str | Path) -> Path:
    """A cell's per-epoch pretraining metrics: its own, or those of the pretraining it links."""
    own = RunDir(cell_dir).metrics
    linked = RunDir(Path(cell_dir) / LINK).metrics
    return own if own.is_file() or not linked.is_file() else linked
