"""One epoch of pretraining steps: forward, the finite-loss check, backward, optimiser step.

Each step is logged to ``metrics.jsonl`` every ``train.log_every_steps`` (and at the epoch's last
step), shown on a progress bar when stderr is a terminal (else logged), and checkpointed every
``train.checkpoint_every_steps``. The epoch starts at ``state.batch``: mid-epoch after a resume.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sslight.data import ImageBatch, views_of_batch
from sslight.engine.optim import set_lr_and_weight_decay
from sslight.engine.pretraining import Pretraining
from sslight.methods.base import StepContext, StepOutput

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training diverged; stopping beats silently training on NaNs."""


@dataclass(frozen=True)
class EpochStats:
    """What an epoch's summary line needs from its steps."""

    seconds: float
    images: int  # over every process
    last_logs: dict[str, Any]


def train_one_epoch(run: Pretraining, epoch: int) -> EpochStats:
    """Train ``epoch`` (0-based) from batch ``run.state.batch`` to its end."""
    train, steps_per_epoch, first = run.cfg.train, run.steps_per_epoch, run.state.batch
    run.data.sampler.set_epoch(epoch)
    run.data.sampler.set_start_batch(first)
    run.model.train()
    started, seen, last_logs = time.time(), 0, {}
    bar = tqdm(
        total=steps_per_epoch,
        initial=first,
        desc=f"epoch {epoch + 1}/{train.epochs}",
        disable=not run.show_bar,
        leave=False,
    )
    for batch, (views, labels) in enumerate(run.data.loader, start=first):
        if batch >= steps_per_epoch:
            break
        ctx = StepContext(epoch, epoch * steps_per_epoch + batch, steps_per_epoch)
        out = _train_step(run, views, labels, ctx)
        seen += labels.shape[0] * run.env.world_size
        last_logs = out.logs
        run.monitor.update(out.logs)
        bar.update(1)
        bar.set_postfix(loss=f"{out.logs.get('loss', 0.0):.4f}")
        if ctx.step % train.log_every_steps == 0 or batch == steps_per_epoch - 1:
            _log_step(run, ctx, batch, out.logs)
        if train.checkpoint_every_steps and (ctx.step + 1) % train.checkpoint_every_steps == 0:
            run.state.save(run.run_dir.checkpoints, epoch, batch + 1)
    bar.close()
    return EpochStats(time.time() - started, seen, last_logs)


def _train_step(
    run: Pretraining, views: list[torch.Tensor] | ImageBatch, labels: torch.Tensor, ctx: StepContext
) -> StepOutput:
    """One optimiser step at the step's learning rate and weight decay; gradients are clipped
    to ``train.clip_grad`` (when > 0) before the method's pre-step hook."""
    method, optimizer, device = run.state.method, run.state.optimizer, run.rt.device
    set_lr_and_weight_decay(optimizer, run.lr_schedule[ctx.step], run.wd_schedule[ctx.step])
    views = views_of_batch(views, run.data.device_views, device)
    labels = labels.to(device, non_blocking=True)
    with run.rt.autocast():
        out = run.model(views, labels, ctx)
    if not torch.isfinite(out.loss):
        raise NonFiniteLossError(
            f"loss is {out.loss.item()} at epoch {ctx.epoch + 1}, step {ctx.step}; "
            "lower train.base_lr or check the data"
        )
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    if run.cfg.train.clip_grad > 0:
        nn.utils.clip_grad_norm_(method.student.parameters(), run.cfg.train.clip_grad)
    method.before_optimizer_step(ctx)
    optimizer.step()
    method.after_optimizer_step(ctx)
    return out


def _log_step(run: Pretraining, ctx: StepContext, batch: int, logs: dict[str, Any]) -> None:
    """The step's ``metrics.jsonl`` line and, without a progress bar, its log line (rank 0)."""
    run.metrics.write(
        {
            "step": ctx.step,
            "epoch": ctx.epoch,
            "lr": float(run.lr_schedule[ctx.step]),
            "wd": float(run.wd_schedule[ctx.step]),
            **logs,
        }
    )
    if not run.show_bar and run.env.is_main:
        log.info(
            "epoch %d step %d/%d loss %.4f",
            ctx.epoch + 1,
            batch + 1,
            run.steps_per_epoch,
            logs.get("loss", np.nan),
        )
