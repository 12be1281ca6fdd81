"""Orchestrator overhead: expanding and registering a 1,000-cell grid, and ``orchestrate status``
over a registry of 10,000 runs (the in-process CLI call, reconcile included, as users run it).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import insert, update

from benchmarks.common import median

GRID_TARGET_S = 2.0
STATUS_TARGET_S = 0.3
ACTIVE_RUNS = 100  # running cells of the 10,000, each with a live local process to ask about


def grid_file(directory: Path, seeds: int) -> Path:
    """A grid of ``seeds × 2 backbones × 2 view policies`` cells."""
    doc = {
        "name": "bench",
        "workdir": str(directory / "runs"),
        "base": {
            "method": "dino",
            "data": {"dataset": "synthetic", "image_size": 32},
            "train": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0},
            "eval": {"knn": {"monitor": False}},
            "stages": ["pretrain", "knn"],
        },
        "axes": {
            "seed": list(range(seeds)),
            "backbone": ["mobilenet_v2", "resnet18"],
            "views.policy": ["baseline", "sslight"],
        },
    }
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def grid_timing(directory: Path, cells: int) -> dict[str, Any]:
    """Seconds to expand (``load_grid``, as ``--dry-run``) and register into a fresh registry."""
    from db import open_registry
    from orchestrator.execution.submit import register_grid
    from orchestrator.grid.spec import load_grid

    path = grid_file(directory, cells // 4)
    start = time.perf_counter()
    grid = load_grid(path)
    expand = time.perf_counter() - start
    start = time.perf_counter()
    registry = open_registry(f"sqlite:///{directory / 'grid.db'}")
    opened = time.perf_counter() - start
    with registry:
        start = time.perf_counter()
        register_grid(registry, grid)
        registered = time.perf_counter() - start
        assert len(registry.runs(kinds=("cell",))) == len(grid.cells)
    total = expand + registered
    return {
        "cells": len(grid.cells),
        "expand_s": round(expand, 3),
        "register_s": round(registered, 3),
        "open_fresh_registry_s": round(opened, 3),
        "seconds": round(total, 3),
        "target": GRID_TARGET_S,
        "met": total < GRID_TARGET_S,
    }


def filled_registry(url: str, runs: int) -> None:
    """``runs`` runs of one grid: mostly finished (with results) or failed, some pending, and
    ``ACTIVE_RUNS`` running under this process's pid (alive, so reconcile leaves them be)."""
    from db import open_registry
    from db.models import Attempt, Run
    from sslight.config import config_to_dict, resolve

    config = config_to_dict(
        resolve({"method": "dino", "backbone": "resnet18", "data": {"dataset": "synthetic"}})
    )
    with open_registry(url) as registry:
        grid_id = registry.upsert_grid("bench", "bench.yaml", "runs/bench", {"cells": runs})
        cells = [
            {"key": f"{i:064x}", "name": f"cell{i}", "config": config, "output_dir": f"c/{i}"}
            for i in range(runs)
        ]
        registry.add_runs(grid_id, cells)
        with registry.session() as session:
            result = {"knn_top1": 71.2, "linear_top1": 74.5}
            session.execute(update(Run).values(status="finished", result=result))
            session.execute(update(Run).where(Run.id % 5 == 0).values(status="failed", error="x"))
            session.execute(update(Run).where(Run.id % 10 == 1).values(status="pending"))
            active = Run.id % (runs // ACTIVE_RUNS) == 2
            session.execute(update(Run).where(active).values(status="running", stage="pretrain"))
            session.execute(
                insert(Attempt),
                [
                    {"run_id": i + 1, "executor": "local", "job_id": str(os.getpid()), "state": "x"}
                    for i in range(runs)
                ],
            )


def status_timing(directory: Path, runs: int, repeats: int) -> dict[str, Any]:
    """Median seconds of ``orchestrate status`` (in process, output captured)."""
    from orchestrator.cli import main

    url = f"sqlite:///{directory / 'status.db'}"
    filled_registry(url, runs)
    times = []
    for _ in range(repeats):
        out = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(out):
            code = main(["status", "--db", url])
        times.append(time.perf_counter() - start)
        assert code == 0 and f"{runs} cells" in out.getvalue(), out.getvalue()[-300:]
    seconds = median(times)
    return {
        "runs": runs,
        "active_runs": ACTIVE_RUNS,
        "seconds": round(seconds, 3),
        "target": STATUS_TARGET_S,
        "met": seconds < STATUS_TARGET_S,
    }


def run(quick: bool = False, threads: int | None = None) -> dict[str, Any]:
    del threads
    with tempfile.TemporaryDirectory(prefix="sslight-bench-") as tmp:
        directory = Path(tmp)
        return {
            "grid_1000_cells": grid_timing(directory, 8 if quick else 1000),
            "status_10000_runs": status_timing(
                directory, 200 if quick else 10_000, 1 if quick else 3
            ),
        }
