"""The pretraining loop shared by every method, readable top to bottom (cf. DINO's main_dino.py).

Process group → data → method (SyncBN + DDP when distributed) → optimiser → per-iteration
schedules → resume from the last checkpoint (sslight/engine/train_state.py) → epochs of steps,
each checked for a finite loss (sslight/engine/train_one_epoch.py) → at each epoch's end the k-NN
and collapse monitors and an atomic checkpoint (sslight/engine/epoch_end.py) → result.json.
Only rank 0 writes files.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sslight.config.load import config_to_dict
from sslight.engine.distributed import DistEnv, joined
from sslight.engine.epoch_end import EpochHook, end_epoch
from sslight.engine.metrics import MetricsLog
from sslight.engine.monitors import EpochMonitor
from sslight.engine.optim import build_optimizer
from sslight.engine.pretrain_data import PretrainData, build_data
from sslight.engine.pretraining import Pretraining
from sslight.engine.rundir import RunDir
from sslight.engine.runtime import Runtime, compile_backbones, seed_everything, wants_cuda
from sslight.engine.schedules import cosine_schedule
from sslight.engine.train_one_epoch import train_one_epoch
from sslight.engine.train_state import TrainState
from sslight.methods import METHODS
from sslight.methods.base import SSLMethod

log = logging.getLogger(__name__)


def pretrain(cfg: BaseModel, on_epoch: EpochHook | None = None) -> dict[str, Any]:
    """Pretrain ``cfg`` in ``cfg.output_dir``, resuming from its last checkpoint if there is one.

    Runs data-parallel when the environment describes a process group (torchrun, submitit).
    ``on_epoch(summary)`` is called on rank 0 after each epoch's summary (the ``metrics.jsonl``
    line, k-NN monitor included) is written and checkpointed; an exception it raises ends
    training there (an Optuna pruner does this), leaving a resumable checkpoint behind.
    """
    with joined(lambda: wants_cuda(cfg.train)) as env:  # ``sslight run``'s group, or its own
        return _pretrain(cfg, env, on_epoch)


def _pretrain(cfg: Any, env: DistEnv, on_epoch: EpochHook | None = None) -> dict[str, Any]:
    """Set up, resume where the last checkpoint stopped, train the remaining epochs."""
    run = _set_up(cfg, env)
    if run.state.resume(run.run_dir.checkpoints):
        run.metrics.rewind(run.state.step)
    started = time.time()
    for epoch in range(run.state.epoch, cfg.train.epochs):
        stats = train_one_epoch(run, epoch)
        end_epoch(run, epoch, stats, on_epoch)
    return _result(run, time.time() - started)


def _set_up(cfg: Any, env: DistEnv) -> Pretraining:
    """The run directory (its config recorded), seeds, data, method, optimiser and schedules."""
    run_dir, train = RunDir(cfg.output_dir), cfg.train
    if env.is_main:
        run_dir.create()
        run_dir.record_config(config_to_dict(cfg))  # refuses a config other than the recorded one
    rt = Runtime.from_config(train, cfg.backbone, env.local_rank)
    seed_everything(cfg.seed + env.rank, train.deterministic)
    data = build_data(cfg, env, rt.device)
    method = _build_method(cfg, data, rt, env)
    model = _distribute(method, rt, env)
    optimizer = build_optimizer(train.optimizer, method.trainable_modules(), train.momentum)
    lr_schedule, wd_schedule = _schedules(train, data.steps_per_epoch)
    return Pretraining(
        cfg=cfg,
        env=env,
        run_dir=run_dir,
        rt=rt,
        data=data,
        model=model,
        state=TrainState(method, optimizer, env, cfg, data.steps_per_epoch),
        lr_schedule=lr_schedule,
        wd_schedule=wd_schedule,
        metrics=MetricsLog(run_dir.metrics, enabled=env.is_main),
        monitor=EpochMonitor(method.collapse_reference()),
        show_bar=train.progress and env.is_main and sys.stderr.isatty(),
    )


def _build_method(cfg: Any, data: PretrainData, rt: Runtime, env: DistEnv) -> SSLMethod:
    method = METHODS.get(cfg.method).build(cfg, num_classes=data.source.num_classes)
    if env.enabled and rt.device.type == "cuda":
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
    elif env.enabled:
        log.info("SyncBatchNorm needs GPUs: BatchNorm statistics stay per process on CPU")
    return prepare_method(method, rt, cfg.train.epochs, data.steps_per_epoch)


def prepare_method(method: SSLMethod, rt: Runtime, epochs: int, steps_per_epoch: int) -> SSLMethod:
    """Place ``method`` as the runtime says (device, channels_last, compile) and set up its
    per-iteration schedules; shared by the trainer and the benchmarks."""
    method.channels_last = rt.channels_last
    method.to(rt.device)
    if rt.channels_last:
        method.to(memory_format=torch.channels_last)
    if rt.compile:
        compile_backbones(method)
    method.setup(epochs, steps_per_epoch)
    return method


def _distribute(method: SSLMethod, rt: Runtime, env: DistEnv) -> nn.Module:
    """``method`` wrapped in DistributedDataParallel when distributed, else itself."""
    if not env.enabled:
        return method
    for (
        buffer
    ) in method.buffers():  # synced once here, not every step (SwAV queues are per process)
        torch.distributed.broadcast(buffer, src=0)
    return DistributedDataParallel(
        method,
        device_ids=[rt.device.index] if rt.device.type == "cuda" else None,
        broadcast_buffers=False,
    )


def _schedules(train: Any, steps_per_epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Learning rate (linear scaling rule on the global batch, warmup, cosine) and weight decay
    (cosine), one value per global step."""
    scale = train.batch_size / 256
    lr_schedule = cosine_schedule(
        train.base_lr * scale,
        train.min_lr,
        train.epochs,
        steps_per_epoch,
        train.warmup_epochs,
        train.warmup_start_lr,
    )
    wd_schedule = cosine_schedule(
        train.weight_decay, train.weight_decay_end, train.epochs, steps_per_epoch
    )
    return lr_schedule, wd_schedule


def _result(run: Pretraining, seconds: float) -> dict[str, Any]:
    """What pretraining adds to result.json (written by rank 0, returned by every rank)."""
    history = run.state.history
    result = {
        "pretrain_epochs": run.cfg.train.epochs,
        "pretrain_loss": history.get("loss"),
        "pretrain_seconds": round(seconds, 2),
    }
    if "knn_top1" in history:
        result["monitor_knn_top1"] = history["knn_top1"]
    return run.run_dir.update_result(result) if run.env.is_main else result
