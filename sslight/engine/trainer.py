"""The pretraining loop shared by every method, readable top to bottom (cf. DINO's main_dino.py).

Process group → data → method (SyncBN + DDP when distributed) → optimiser → per-iteration
schedules → auto-resume → epochs of steps, each checked for a finite loss → k-NN monitor →
atomic checkpoint → result.json. Only rank 0 writes files.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from sslight.config.load import config_to_dict
from sslight.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from sslight.engine.distributed import DistEnv, barrier, gather_objects, init_distributed, shutdown
from sslight.engine.metrics import MetricsLog
from sslight.engine.monitors import EpochMonitor, RunCollapsed
from sslight.engine.optim import build_optimizer, set_lr_and_weight_decay
from sslight.engine.pretrain_data import PretrainData, build_data, knn_monitor
from sslight.engine.rundir import RunDir
from sslight.engine.runtime import Runtime, compile_backbones, seed_everything, wants_cuda
from sslight.engine.schedules import cosine_schedule
from sslight.methods import METHODS
from sslight.methods.base import SSLMethod, StepContext

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training diverged; stopping beats silently training on NaNs."""


EpochHook = Callable[[dict[str, Any]], None]


def pretrain(cfg: BaseModel, on_epoch: EpochHook | None = None) -> dict[str, Any]:
    """Pretrain ``cfg`` in ``cfg.output_dir``, resuming from its last checkpoint if there is one.

    Runs data-parallel when the environment describes a process group (torchrun, submitit).
    ``on_epoch(summary)`` is called on rank 0 after each epoch's summary (the ``metrics.jsonl``
    line, k-NN monitor included) is written and checkpointed; an exception it raises ends
    training there (an Optuna pruner does this), leaving a resumable checkpoint behind.
    """
    env = init_distributed(wants_cuda(cfg.train))
    try:
        return _pretrain(cfg, env, on_epoch)
    finally:
        shutdown(env)


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


def _pretrain(cfg: Any, env: DistEnv, on_epoch: EpochHook | None = None) -> dict[str, Any]:
    run, train = RunDir(cfg.output_dir), cfg.train
    if env.is_main:
        run.create()
        run.record_config(config_to_dict(cfg))  # refuses a config other than the recorded one
    rt = Runtime.from_config(train, cfg.backbone, env.local_rank)
    seed_everything(cfg.seed + env.rank, train.deterministic)

    data = build_data(cfg, env)
    method = _build_method(cfg, data, rt, env)
    model: nn.Module = method
    if env.enabled:  # buffers are synced once here, not every step (SwAV queues are per process)
        for buffer in method.buffers():
            torch.distributed.broadcast(buffer, src=0)
        model = DistributedDataParallel(
            method,
            device_ids=[rt.device.index] if rt.device.type == "cuda" else None,
            broadcast_buffers=False,
        )

    steps_per_epoch = data.steps_per_epoch
    optimizer = build_optimizer(train.optimizer, method.trainable_modules(), train.momentum)
    scale = train.batch_size / 256  # linear scaling rule on the global batch
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

    metrics = MetricsLog(run.metrics, enabled=env.is_main)
    start_epoch, start_batch, history = 0, 0, {}
    state = load_checkpoint(run.checkpoints)
    if state is not None:
        method.student.load_state_dict(state["model"])
        if method.probe is not None:
            method.probe.load_state_dict(state["probe"])
        per_rank = state.get("method_state_per_rank") or []
        method.load_extra_state(
            per_rank[env.rank] if len(per_rank) == env.world_size else state["method_state"]
        )
        optimizer.load_state_dict(state["optimizer"])
        rngs = state["rng"]
        set_rng_state(rngs[env.rank] if len(rngs) == env.world_size else rngs[0])
        start_epoch, start_batch, history = state["epoch"], state["batch"], state["history"]
        metrics.rewind(start_epoch * steps_per_epoch + start_batch)
        log.info("resumed from %s at epoch %d, batch %d", run.checkpoints, start_epoch, start_batch)

    def checkpoint(epoch: int, batch: int) -> None:
        rngs = gather_objects(env, rng_state())  # every rank's generator, for exact resume
        per_rank = gather_objects(env, method.extra_state()) if method.per_process_state else []
        if not env.is_main:
            return
        save_checkpoint(
            {
                "model": method.student.state_dict(),
                "probe": method.probe.state_dict() if method.probe is not None else {},
                "method_state": per_rank[0] if per_rank else method.extra_state(),
                "method_state_per_rank": per_rank,
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "batch": batch,
                "step": epoch * steps_per_epoch + batch,
                "rng": rngs,
                "history": history,
                "config": config_to_dict(cfg),
                "world_size": env.world_size,
            },
            run.checkpoints,
        )

    show_bar = train.progress and env.is_main and sys.stderr.isatty()
    monitor = EpochMonitor(method.collapse_reference())
    started = time.time()
    for epoch in range(start_epoch, train.epochs):
        first = start_batch if epoch == start_epoch else 0
        data.sampler.set_epoch(epoch)
        data.sampler.set_start_batch(first)
        model.train()
        epoch_start, seen, last_logs = time.time(), 0, {}
        bar = tqdm(
            total=steps_per_epoch,
            initial=first,
            desc=f"epoch {epoch + 1}/{train.epochs}",
            disable=not show_bar,
            leave=False,
        )
        for batch, (views, labels) in enumerate(data.loader, start=first):
            if batch >= steps_per_epoch:
                break
            ctx = StepContext(epoch, epoch * steps_per_epoch + batch, steps_per_epoch)
            set_lr_and_weight_decay(optimizer, lr_schedule[ctx.step], wd_schedule[ctx.step])
            views = [v.to(rt.device, non_blocking=True) for v in views]
            labels = labels.to(rt.device, non_blocking=True)
            with rt.autocast():
                out = model(views, labels, ctx)
            if not torch.isfinite(out.loss):
                raise NonFiniteLossError(
                    f"loss is {out.loss.item()} at epoch {epoch + 1}, step {ctx.step}; "
                    "lower train.base_lr or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if train.clip_grad > 0:
                nn.utils.clip_grad_norm_(method.student.parameters(), train.clip_grad)
            method.before_optimizer_step(ctx)
            optimizer.step()
            method.after_optimizer_step(ctx)

            seen += labels.shape[0] * env.world_size
            last_logs = out.logs
            monitor.update(out.logs)
            bar.update(1)
            bar.set_postfix(loss=f"{out.logs.get('loss', 0.0):.4f}")
            if ctx.step % train.log_every_steps == 0 or batch == steps_per_epoch - 1:
                metrics.write(
                    {
                        "step": ctx.step,
                        "epoch": epoch,
                        "lr": float(lr_schedule[ctx.step]),
                        "wd": float(wd_schedule[ctx.step]),
                        **out.logs,
                    }
                )
                if not show_bar and env.is_main:
                    log.info(
                        "epoch %d step %d/%d loss %.4f",
                        epoch + 1,
                        batch + 1,
                        steps_per_epoch,
                        out.logs.get("loss", np.nan),
                    )
            if train.checkpoint_every_steps and (ctx.step + 1) % train.checkpoint_every_steps == 0:
                checkpoint(epoch, batch + 1)
        bar.close()

        seconds = time.time() - epoch_start
        summary = {
            "step": (epoch + 1) * steps_per_epoch - 1,
            "epoch": epoch,
            "type": "epoch",
            "epoch_seconds": round(seconds, 3),
            "images_per_second": round(seen / seconds, 2) if seconds > 0 else None,
            **{f"last_{k}": v for k, v in last_logs.items()},
        }
        monitor_now = (
            epoch + 1
        ) % cfg.eval.knn.monitor_every_epochs == 0 or epoch + 1 == train.epochs
        features = None
        if data.monitor and monitor_now:
            if env.is_main:
                accuracy, features = knn_monitor(method, data, cfg, rt)
                summary["knn_top1"] = history["knn_top1"] = accuracy
            barrier(env)
        summary.update(monitor.summary(features, method.eval_backbone().embed_dim))
        collapse = _record_collapse(summary, history, run, env)
        history["loss"] = last_logs.get("loss")
        metrics.write(summary)
        if env.is_main:
            log.info(
                "epoch %d/%d done in %.1fs: loss %.4f, k-NN top-1 %s",
                epoch + 1,
                train.epochs,
                seconds,
                last_logs.get("loss", np.nan),
                summary.get("knn_top1", "-"),
            )
        checkpoint(epoch + 1, 0)
        if on_epoch is not None and env.is_main:
            on_epoch(summary)
        if train.stop_on_collapse and gather_objects(env, collapse)[0]:
            raise RunCollapsed(epoch, summary.get("collapse_reason") or "flagged on rank 0")

    result = {
        "pretrain_epochs": train.epochs,
        "pretrain_loss": history.get("loss"),
        "pretrain_seconds": round(time.time() - started, 2),
    }
    if "knn_top1" in history:
        result["monitor_knn_top1"] = history["knn_top1"]
    return run.update_result(result) if env.is_main else result


def _record_collapse(
    summary: dict[str, Any], history: dict[str, Any], run: RunDir, env: DistEnv
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
            run.update_result({"collapse": history["collapse"]})
    return True
