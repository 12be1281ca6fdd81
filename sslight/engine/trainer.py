"""The pretraining loop shared by every method, readable top to bottom (cf. DINO's main_dino.py).

Data → method → optimiser → per-iteration schedules → (auto-resume) → epochs of steps, each
checked for a finite loss → k-NN monitor → atomic checkpoint → result.json.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel
from torch.utils.data import DataLoader
from tqdm import tqdm

from sslight.config.load import config_to_dict
from sslight.data import (
    CropSpec,
    EpochSampler,
    ImageSource,
    build_eval_loader,
    build_multicrop,
    build_source,
    build_train_loader,
    stratified_subset,
)
from sslight.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from sslight.engine.knn import extract_features, knn_accuracy
from sslight.engine.metrics import MetricsLog
from sslight.engine.optim import build_optimizer, set_lr_and_weight_decay
from sslight.engine.rundir import RunDir
from sslight.engine.runtime import Runtime, seed_everything
from sslight.engine.schedules import cosine_schedule
from sslight.methods import METHODS
from sslight.methods.base import SSLMethod, StepContext

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training diverged; stopping beats silently training on NaNs."""


@dataclass
class PretrainData:
    source: ImageSource
    loader: DataLoader
    sampler: EpochSampler
    steps_per_epoch: int
    monitor: tuple[DataLoader, DataLoader] | None


def build_data(cfg: Any) -> PretrainData:
    """Multi-crop training loader and, when the k-NN monitor is on, train/val eval loaders."""
    data, views = cfg.data, cfg.views
    source = build_source(
        data.dataset, data.root, "train", image_size=data.image_size, download=data.download
    )
    indices = (
        stratified_subset(source.labels, data.train_subset, cfg.seed) if data.train_subset else None
    )
    transform = build_multicrop(
        METHODS.get(cfg.method).augmentation,
        CropSpec(
            views.global_crops.number, views.global_crops.size, tuple(views.global_crops.scale)
        ),
        CropSpec(views.local_crops.number, views.local_crops.size, tuple(views.local_crops.scale)),
    )
    loader, sampler = build_train_loader(
        source,
        transform,
        cfg.train.batch_size,
        cfg.seed,
        indices=indices,
        num_workers=data.num_workers,
        pin_memory=torch.cuda.is_available(),
    )
    steps = sampler.batches_per_epoch
    if steps == 0:
        raise ValueError(
            f"data: {len(sampler)} training images give no full batch of "
            f"{cfg.train.batch_size}; lower train.batch_size or enlarge the subset"
        )
    if cfg.train.max_steps_per_epoch:
        steps = min(steps, cfg.train.max_steps_per_epoch)
    monitor = None
    if cfg.eval.knn.monitor:
        val = build_source(
            data.dataset, data.root, "val", image_size=data.image_size, download=data.download
        )
        val_idx = (
            stratified_subset(val.labels, data.val_subset, cfg.seed) if data.val_subset else None
        )
        batch = max(64, cfg.train.batch_size)
        monitor = (
            build_eval_loader(
                source, data.image_size, batch, indices=indices, num_workers=data.num_workers
            ),
            build_eval_loader(
                val, data.image_size, batch, indices=val_idx, num_workers=data.num_workers
            ),
        )
    return PretrainData(source, loader, sampler, steps, monitor)


def knn_monitor(method: SSLMethod, data: PretrainData, cfg: Any, rt: Runtime) -> float:
    """Top-1 (%) of a k-NN classifier on the evaluated backbone's features (train → val)."""
    assert data.monitor is not None
    backbone = method.eval_backbone()
    train_f, train_y = extract_features(backbone, data.monitor[0], rt.device, rt.channels_last)
    val_f, val_y = extract_features(backbone, data.monitor[1], rt.device, rt.channels_last)
    k = cfg.eval.knn.monitor_k
    return knn_accuracy(train_f, train_y, val_f, val_y, [k], cfg.eval.knn.temperature)[k]


def pretrain(cfg: BaseModel) -> dict[str, Any]:
    """Pretrain ``cfg`` in ``cfg.output_dir``, resuming from its last checkpoint if there is one."""
    run = RunDir(cfg.output_dir)
    run.create()
    run.write_config(config_to_dict(cfg))
    rt = Runtime.from_config(cfg.train, cfg.backbone)
    seed_everything(cfg.seed, cfg.train.deterministic)

    data = build_data(cfg)
    method = METHODS.get(cfg.method).build(cfg, num_classes=data.source.num_classes)
    method.channels_last = rt.channels_last
    method.to(rt.device)
    if rt.channels_last:
        method.to(memory_format=torch.channels_last)
    method.setup(cfg.train.epochs, data.steps_per_epoch)

    train = cfg.train
    steps_per_epoch = data.steps_per_epoch
    optimizer = build_optimizer(train.optimizer, method.trainable_modules(), train.momentum)
    scale = train.batch_size / 256
    lr_schedule = cosine_schedule(
        train.base_lr * scale,
        train.min_lr,
        train.epochs,
        steps_per_epoch,
        train.warmup_epochs,
        train.warmup_start_lr * scale,
    )
    wd_schedule = cosine_schedule(
        train.weight_decay, train.weight_decay_end, train.epochs, steps_per_epoch
    )

    metrics = MetricsLog(run.metrics)
    start_epoch, start_batch, history = 0, 0, {}
    state = load_checkpoint(run.checkpoints)
    if state is not None:
        method.student.load_state_dict(state["model"])
        if method.probe is not None and "probe" in state:
            method.probe.load_state_dict(state["probe"])
        method.load_extra_state(state["method_state"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start_epoch, start_batch, history = state["epoch"], state["batch"], state["history"]
        metrics.rewind(start_epoch * steps_per_epoch + start_batch)
        log.info("resumed from %s at epoch %d, batch %d", run.checkpoints, start_epoch, start_batch)

    def checkpoint(epoch: int, batch: int) -> None:
        save_checkpoint(
            {
                "model": method.student.state_dict(),
                "probe": method.probe.state_dict() if method.probe is not None else {},
                "method_state": method.extra_state(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "batch": batch,
                "step": epoch * steps_per_epoch + batch,
                "rng": rng_state(),
                "history": history,
                "config": config_to_dict(cfg),
            },
            run.checkpoints,
        )

    show_bar = train.progress and sys.stderr.isatty()
    started = time.time()
    for epoch in range(start_epoch, train.epochs):
        first = start_batch if epoch == start_epoch else 0
        data.sampler.set_epoch(epoch)
        data.sampler.set_start_batch(first)
        method.train()
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
                out = method(views, labels, ctx)
            if not torch.isfinite(out.loss):
                raise NonFiniteLossError(
                    f"loss is {out.loss.item()} at epoch {epoch + 1}, step "
                    f"{ctx.step}; lower train.base_lr or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if train.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(method.student.parameters(), train.clip_grad)
            method.before_optimizer_step(ctx)
            optimizer.step()
            method.after_optimizer_step(ctx)

            seen += labels.shape[0]
            last_logs = out.logs
            bar.update(1)
            bar.set_postfix(loss=f"{out.logs.get('loss', 0.0):.4f}")
            if ctx.step % train.log_every_steps == 0 or batch == steps_per_epoch - 1:
                record = {
                    "step": ctx.step,
                    "epoch": epoch,
                    "lr": float(lr_schedule[ctx.step]),
                    "wd": float(wd_schedule[ctx.step]),
                    **out.logs,
                }
                metrics.write(record)
                if not show_bar:
                    log.info(
                        "epoch %d step %d/%d loss %.4f",
                        epoch + 1,
                        batch + 1,
                        steps_per_epoch,
                        out.logs.get("loss", float("nan")),
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
        if data.monitor and (
            (epoch + 1) % cfg.eval.knn.monitor_every_epochs == 0 or epoch + 1 == train.epochs
        ):
            summary["knn_top1"] = knn_monitor(method, data, cfg, rt)
            history["knn_top1"] = summary["knn_top1"]
        history["loss"] = last_logs.get("loss")
        metrics.write(summary)
        log.info(
            "epoch %d/%d done in %.1fs: %s",
            epoch + 1,
            train.epochs,
            seconds,
            {k: v for k, v in summary.items() if k in ("knn_top1", "last_loss")},
        )
        checkpoint(epoch + 1, 0)

    result = {
        "pretrain_epochs": train.epochs,
        "pretrain_loss": history.get("loss"),
        "pretrain_seconds": round(time.time() - started, 2),
    }
    if "knn_top1" in history:
        result["monitor_knn_top1"] = history["knn_top1"]
    return run.update_result(result)
