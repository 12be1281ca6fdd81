"""The R-CNN training loop: Detectron2's ``WarmupMultiStepLR`` + SGD schedule, resumable.

Per iteration ``i``: lr = base_lr × warmup(i) × gamma^(number of steps ≤ i), with a linear
warmup from ``warmup_factor`` to 1 over ``warmup_iters``; SGD with momentum, weight decay on
every parameter except those of normalisation layers (Detectron2's ``WEIGHT_DECAY_NORM: 0``).
A non-finite loss stops training. Weights and optimizer are checkpointed every
``checkpoint_every_iters`` and the weights alone at the end; training resumes from there, and
batches depend only on (seed, iteration). Distributed, ``batch_size`` is the global batch and
DistributedDataParallel averages the gradients of the ranks' shares.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from sslight.data.coco import CocoDetection, TrainBatches, collate_detection
from sslight.engine.checkpoint import load_checkpoint, save_checkpoint
from sslight.engine.distributed import DistEnv, sum_over_ranks
from sslight.evaluation.data_parallel import for_training

log = logging.getLogger(__name__)

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def lr_at(iteration: int, det: Any) -> float:
    """Detectron2's WarmupMultiStepLR (linear warmup) at ``iteration``."""
    factor = 1.0
    if iteration < det.warmup_iters:
        alpha = iteration / det.warmup_iters
        factor = det.warmup_factor * (1 - alpha) + alpha
    return det.base_lr * factor * det.gamma ** bisect.bisect_right(det.steps, iteration)


def detection_optimizer(model: nn.Module, det: Any) -> torch.optim.SGD:
    """SGD with two groups: normalisation-layer parameters without weight decay, the rest with."""
    decay, no_decay = [], []
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if param.requires_grad:
                (no_decay if isinstance(module, NORM_LAYERS) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": det.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=det.base_lr, momentum=det.momentum)


def train_detector(
    model: nn.Module,
    dataset: CocoDetection,
    det: Any,
    *,
    seed: int,
    workers: int,
    device: torch.device,
    checkpoint_dir: Path,
    log_file: Path,
    log_every: int,
    env: DistEnv | None = None,
) -> None:
    """Train ``model`` for ``det.max_iters`` iterations (continuing from ``checkpoint_dir``) on
    aspect-ratio grouped batches of ``det.batch_size`` images; with ``env`` distributed, each rank
    on its share of every batch with the gradients averaged, rank 0 writing log and checkpoints."""
    env = env or DistEnv()
    optimizer = detection_optimizer(model, det)
    start = _resume(model, optimizer, checkpoint_dir, det)
    if start >= det.max_iters:
        return
    batches = TrainBatches(
        len(dataset),
        det.batch_size,
        det.max_iters,
        seed,
        start,
        groups=dataset.aspect_groups(),
        rank=env.rank,
        world_size=env.world_size,
    )
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate_detection,
        persistent_workers=False,
    )
    trained = for_training(model, env, device)
    trained.train()
    tick, ticked = time.perf_counter(), start
    for iteration, (images, targets) in enumerate(loader, start=start):
        lr = lr_at(iteration, det)
        step = (trained, optimizer, images, targets, lr, iteration, device, env)
        losses, loss_value = _train_step(*step)
        done = iteration + 1
        if not env.is_main:
            continue
        if done % log_every == 0 or done == det.max_iters:
            seconds = (time.perf_counter() - tick) / (done - ticked)
            line = {"iteration": done, "loss": loss_value, "lr": lr, "seconds_per_iter": seconds}
            line |= {k: round(float(v.detach()), 5) for k, v in losses.items()}
            _append_line(log_file, line)
            log.info("detection it %d/%d loss %.4f lr %.5f", done, det.max_iters, line["loss"], lr)
            tick, ticked = time.perf_counter(), done
        if done == det.max_iters:
            save_checkpoint({"model": model.state_dict(), "iteration": done}, checkpoint_dir)
        elif done % det.checkpoint_every_iters == 0:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
            save_checkpoint({**state, "iteration": done}, checkpoint_dir)


def _resume(
    model: nn.Module, optimizer: torch.optim.Optimizer, checkpoint_dir: Path, det: Any
) -> int:
    """The iteration to continue at, model and optimizer restored from ``checkpoint_dir``."""
    state = load_checkpoint(checkpoint_dir)
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    if "optimizer" in state:  # the final checkpoint keeps the weights only
        optimizer.load_state_dict(state["optimizer"])
    start = int(state["iteration"])
    log.info("detection: resuming at iteration %d of %d", start, det.max_iters)
    return start


def _train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: list[torch.Tensor],
    targets: list[dict[str, Any]],
    lr: float,
    iteration: int,
    device: torch.device,
    env: DistEnv,
) -> tuple[dict[str, torch.Tensor], float]:
    """One SGD step at ``lr``; the model's losses and their sum averaged over the ranks
    (FloatingPointError on every rank if it is not finite)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    images = [image.to(device, non_blocking=True) for image in images]
    targets = [_to_device(target, device) for target in targets]
    losses = model(images, targets)
    loss = sum(losses.values())
    loss_value = sum_over_ranks(env, [float(loss.detach())])[0] / env.world_size
    if not math.isfinite(loss_value):
        parts = {k: float(v.detach()) for k, v in losses.items()}
        raise FloatingPointError(
            f"detection loss is {loss_value} at iteration {iteration}: {parts}"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return losses, loss_value


def _to_device(target: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in target.items()
    }


def _append_line(path: Path, line: dict[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(line) + "\n")
