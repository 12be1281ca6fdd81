"""``sslight run``: pretrain, then evaluate, stage by stage, recording everything in result.json.

A stage already marked done in ``result.json`` is skipped; pretraining, linear and semi-supervised
stages resume from their own checkpoints; a failing stage records
``{"error": {"stage", "message"}}`` and leaves the finished stages untouched. In a distributed
job every rank runs every stage (data-parallel, in one process group joined for the whole run);
rank 0 alone writes result.json and the export.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from sslight.config.load import config_to_dict
from sslight.engine.distributed import DistEnv, broadcast_object, joined
from sslight.engine.monitors import RunCollapsed
from sslight.engine.rundir import RunDir
from sslight.engine.runtime import Runtime, wants_cuda
from sslight.stages.base import EpochHook
from sslight.stages.names import PRETRAIN
from sslight.stages.registry import STAGES, stage_fn
from sslight.weights.export import refresh_export
from sslight.weights.init_weights import check_init_weights

log = logging.getLogger(__name__)

__all__ = ["STAGES", "StageError", "run"]


class StageError(RuntimeError):
    """A stage failed; its message is recorded in result.json."""

    def __init__(self, stage: str, message: str) -> None:
        self.stage = stage
        super().__init__(f"stage {stage!r} failed: {message}")


def run(
    cfg: Any,
    on_stage: Callable[[str], None] | None = None,
    on_epoch: EpochHook | None = None,
) -> dict[str, Any]:
    """Run every stage of ``cfg.stages`` not yet done; return the whole result.json.

    ``on_stage(name)`` is called as each stage starts (the orchestrator records it);
    ``on_epoch(summary)`` after each pretraining epoch (see ``engine.trainer.pretrain``)."""
    run_dir = RunDir(cfg.output_dir)
    with joined(lambda: wants_cuda(cfg.train)) as env:  # every rank runs every stage
        _on_main(env, lambda: _check_run(cfg, run_dir))
        for name in cfg.stages:
            done = run_dir.read_result().get("stages", {}).get(name, {}) if env.is_main else {}
            if broadcast_object(env, done.get("status") == "done"):
                log.info("stage %s already done; skipping", name)
                continue
            _run_stage(cfg, name, run_dir, on_stage, on_epoch, env)
    return run_dir.read_result() if env.is_main else {}


def _check_run(cfg: Any, run_dir: RunDir) -> None:
    """Create the run directory and refuse bad input before any stage."""
    run_dir.create()
    run_dir.check_config(config_to_dict(cfg))  # another config on this run: bad input, first
    if cfg.init.weights:  # a missing or misfitting file is bad input (exit 2), before any stage
        check_init_weights(cfg, run_dir.root)


def _on_main(env: DistEnv, action: Callable[[], None]) -> None:
    """``action()`` on rank 0; the other ranks wait for it and stop when it raised."""
    failure = None
    if env.is_main:
        try:
            action()
        except Exception as err:
            failure = err
    if not broadcast_object(env, failure is None):
        raise failure or RuntimeError("rank 0 refused the run before its first stage; see its log")


def _run_stage(
    cfg: Any,
    name: str,
    run_dir: RunDir,
    on_stage: Callable[[str], None] | None,
    on_epoch: EpochHook | None,
    env: DistEnv | None = None,
) -> None:
    """Run stage ``name`` and record it in result.json: its metrics and time, or its error
    (then ``StageError``); the export's sidecar follows the metrics. Ranks other than 0 of
    ``env`` compute their share of the stage and record nothing."""
    env = env or DistEnv()
    if not env.is_main:
        device = Runtime.from_config(cfg.train, cfg.backbone, env.local_rank).device
        stage_fn(cfg, name)(cfg, run_dir.root, device)
        return
    started = time.time()
    log.info("stage %s: starting", name)
    if on_stage is not None:
        on_stage(name)
    try:
        device = Runtime.from_config(cfg.train, cfg.backbone, env.local_rank).device
        hooks = {"on_epoch": on_epoch} if name == PRETRAIN and on_epoch else {}
        metrics = stage_fn(cfg, name)(cfg, run_dir.root, device, **hooks)
        refresh_export(cfg, run_dir.root, name, {**run_dir.read_result(), **metrics})
    except Exception as err:
        collapsed = isinstance(err, RunCollapsed)  # message starts "collapsed:"
        message = str(err) if collapsed else f"{type(err).__name__}: {err}"
        run_dir.update_result(
            {
                "error": {
                    "stage": name,
                    "message": message,
                    "traceback": traceback.format_exc(limit=8),
                }
            }
        )
        raise StageError(name, message) from err
    result = run_dir.read_result()
    record = {
        "status": "done",
        "seconds": round(time.time() - started, 2),
        "world_size": env.world_size,  # the processes that computed it (data-parallel)
    }
    if name != PRETRAIN:
        record["network"] = cfg.eval.network  # which of the method's networks it evaluated
    stages = {**result.get("stages", {}), name: record}
    update = {**metrics, "stages": stages}
    if (result.get("error") or {}).get("stage") == name:
        update["error"] = None  # the failure this stage recorded earlier is resolved
    run_dir.update_result(update)
    log.info("stage %s: done in %.1fs", name, time.time() - started)
