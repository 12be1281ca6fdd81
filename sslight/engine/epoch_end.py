"""The end of a pretraining epoch: its summary line, the monitors, the checkpoint, the hook.

The summary (``"type": "epoch"`` in ``metrics.jsonl``) carries the epoch's timing and last step
logs, the k-NN monitor's top-1 (every ``eval.knn.monitor_every_epochs`` and at the last epoch;
rank 0 computes it while the other ranks wait) and the collapse monitor's fields
(sslight/engine/monitors.py). The first epoch that looks collapsed is recorded in result.json.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from sslight.engine.distributed import DistEnv, barrier, gather_objects
from sslight.engine.monitors import RunCollapsed
from sslight.engine.pretrain_data import knn_monitor
from sslight.engine.pretraining import Pretraining
from sslight.engine.rundir import RunDir
from sslight.engine.train_one_epoch import EpochStats

log = logging.getLogger(__name__)

EpochHook = Callable[[dict[str, Any]], None]


def end_epoch(
    run: Pretraining, epoch: int, stats: EpochStats, on_epoch: EpochHook | None = None
) -> None:
    """Write the summary of ``epoch``, checkpoint at the start of the next one, call
    ``on_epoch(summary)`` on rank 0, and raise RunCollapsed if ``train.stop_on_collapse`` says
    a collapsed epoch ends the run."""
    state, history, last_logs = run.state, run.state.history, stats.last_logs
    summary = _summary(run, epoch, stats)
    features = _knn_monitor(run, epoch, summary)
    summary.update(run.monitor.summary(features, state.method.student.backbone.embed_dim))
    collapse = _record_collapse(summary, history, run.run_dir, run.env)
    history["loss"] = last_logs.get("loss")
    run.metrics.write(summary)
    if run.env.is_main:
        log.info(
            "epoch %d/%d done in %.1fs: loss %.4f, k-NN top-1 %s",
            epoch + 1,
            run.cfg.train.epochs,
            stats.seconds,
            last_logs.get("loss", np.nan),
            summary.get("knn_top1", "-"),
        )
    state.save(run.run_dir.checkpoints, epoch + 1, 0)
    if on_epoch is not None and run.env.is_main:
        on_epoch(summary)
    if run.cfg.train.stop_on_collapse and gather_objects(run.env, collapse)[0]:
        raise RunCollapsed(epoch, summary.get("collapse_reason") or "flagged on rank 0")


def _summary(run: Pretraining, epoch: int, stats: EpochStats) -> dict[str, Any]:
    seconds = stats.seconds
    return {
        "step": (epoch + 1) * run.steps_per_epoch - 1,
        "epoch": epoch,
        "type": "epoch",
        "epoch_seconds": round(seconds, 3),
        "images_per_second": round(stats.images / seconds, 2) if seconds > 0 else None,
        **{f"last_{k}": v for k, v in stats.last_logs.items()},
    }


def _knn_monitor(run: Pretraining, epoch: int, summary: dict[str, Any]) -> torch.Tensor | None:
    """Add the k-NN monitor's top-1 to ``summary`` when it runs this epoch; the training images'
    features it extracted (rank 0), else None."""
    every, epochs = run.cfg.eval.knn.monitor_every_epochs, run.cfg.train.epochs
    if not run.data.monitor or ((epoch + 1) % every != 0 and epoch + 1 != epochs):
        return None
    features = None
    if run.env.is_main:
        accuracy, features = knn_monitor(run.state.method, run.data, run.cfg, run.rt)
        summary["knn_top1"] = run.state.history["knn_top1"] = accuracy
    barrier(run.env)
    return features


def _record_collapse(
    summary: dict[str, Any], history: dict[str, Any], run_dir: RunDir, env: DistEnv
) -> bool:
    """Warn when the epoch looks collapsed; the first such epoch goes to result.json's
    ``collapse`` ({"epoch": 0-based, as in metrics.jsonl, "reason"})."""
    if not summary.get("collapse_suspected"):
        return False
    reason = summary["collapse_reason"]
    if env.is_main:
        log.warning(
            "epoch %d looks collapsed: %s; the features are unlikely to be useful "
            "(train.stop_on_collapse=true ends such runs)",
            summary["epoch"] + 1,
            reason,
        )
        if "collapse" not in history:
            history["collapse"] = {"epoch": summary["epoch"], "reason": reason}
            run_dir.update_result({"collapse": history["collapse"]})
    return True
