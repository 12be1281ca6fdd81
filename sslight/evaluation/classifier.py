"""What linear evaluation and semi-supervised fine-tuning share: a classifier (features + linear
head), one training epoch, top-k accuracy, and the resumable epoch loop (the labelled data they
train on: sslight/evaluation/labelled_data.py).

The loop follows DINO's ``eval_linear.py`` and the seed's ``cls_trainer.py``: cosine learning rate
to ``min_lr`` (the seed's 1e-6), held for each epoch at the value of its first step as the seed
sets it (``lr_schedule: epoch``) or moved every iteration (``step``), validation after every
epoch, the best validation top-1 reported. It checkpoints after every
epoch, and each epoch's batches depend only on (seed, epoch), so a resumed run continues exactly
where the interrupted one stopped.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sslight.engine.checkpoint import load_checkpoint, save_checkpoint
from sslight.engine.distributed import DistEnv, sum_over_ranks
from sslight.engine.optim import set_lr_and_weight_decay
from sslight.engine.schedules import cosine_schedule, held_per_epoch
from sslight.evaluation.data_parallel import for_training, sync_buffers
from sslight.evaluation.features import amp_context
from sslight.evaluation.labelled_data import (
    Batches,
    EpochBatches,
    augmented_batches,
    eval_batches,
    load_labelled_data,
    tensor_batches,
)

log = logging.getLogger(__name__)

__all__ = [
    "Batches",
    "Classifier",
    "EpochBatches",
    "amp_dtype_for",
    "augmented_batches",
    "classifier_lrs",
    "completed_result",
    "eval_batches",
    "evaluate_topk",
    "fit_classifier",
    "linear_head",
    "load_labelled_data",
    "tensor_batches",
    "train_classifier_epoch",
]


def amp_dtype_for(cfg: Any, device: torch.device) -> torch.dtype | None:
    """bf16 autocast when ``train.precision`` is bf16, or auto on a GPU; None otherwise."""
    precision = cfg.train.precision
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def linear_head(in_dim: int, num_classes: int, seed: int) -> nn.Linear:
    """A linear layer initialised as DINO's ``LinearClassifier``: weights N(0, 0.01²), zero bias."""
    head = nn.Linear(in_dim, num_classes)
    nn.init.normal_(head.weight, std=0.01, generator=torch.Generator().manual_seed(seed))
    nn.init.zeros_(head.bias)
    return head


class Classifier(nn.Module):
    """``head(features(x))``. With ``frozen_features`` the features run without gradients and
    stay in eval mode whatever ``train()`` says, and only the head is trainable."""

    def __init__(self, features: nn.Module, head: nn.Module, frozen_features: bool) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.frozen_features = frozen_features

    @property
    def trainable(self) -> nn.Module:
        """The part that is optimised and checkpointed."""
        return self.head if self.frozen_features else self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.frozen_features:
            with torch.no_grad():
                features = self.features(images)
            return self.head(features)
        return self.head(self.features(images))

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.frozen_features:
            self.features.eval()
        return self


def train_classifier_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    lrs: Iterable[float],
    weight_decay: float,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> float:
    """One epoch of cross-entropy training, one batch per value of ``lrs``; the mean loss."""
    model.train()
    total, steps = torch.zeros((), device=device), 0
    for lr, (images, labels) in zip(lrs, batches, strict=False):
        set_lr_and_weight_decay(optimizer, lr, weight_decay)
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with amp_context(device, amp_dtype):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach().float()
        steps += 1
    if steps == 0:
        raise RuntimeError("the training data yielded no batch")
    return float(total) / steps


@torch.no_grad()
def evaluate_topk(
    model: nn.Module,
    batches: Batches,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    env: DistEnv | None = None,
) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (%) of ``model`` in eval mode (top-5 is top-k for k < 5
    classes); with ``env``, ``batches`` are this rank's shard and the counts are summed over the
    ranks."""
    was_training = model.training
    model.eval()
    correct1 = correct5 = count = 0
    try:
        for images, labels in batches:
            labels = labels.to(device, non_blocking=True)
            with amp_context(device, amp_dtype):
                logits = model(images.to(device, non_blocking=True))
            top = logits.float().topk(min(5, logits.shape[1]), dim=1).indices
            hits = top == labels[:, None]
            correct1 += int(hits[:, 0].sum())
            correct5 += int(hits.any(dim=1).sum())
            count += len(labels)
    finally:
        model.train(was_training)
    correct1, correct5, count = sum_over_ranks(env or DistEnv(), [correct1, correct5, count])
    if count == 0:
        raise RuntimeError("the validation data yielded no batch")
    return 100.0 * correct1 / count, 100.0 * correct5 / count


def _summary(state: dict[str, Any]) -> dict[str, float]:
    best, last = state["best"], state["last"]
    return {
        "top1": float(best["top1"]),
        "top5": float(best["top5"]),
        "top1_last": float(last["top1"]),
        "top5_last": float(last["top5"]),
    }


def completed_result(checkpoint_dir: Path, epochs: int) -> dict[str, float] | None:
    """The summary of a stage whose checkpoint has all ``epochs`` done, else None."""
    state = load_checkpoint(checkpoint_dir)
    if state is None or state["epoch"] < epochs:
        return None
    return _summary(state)


def classifier_lrs(
    lr: float, min_lr: float, epochs: int, steps_per_epoch: int, schedule: str
) -> np.ndarray:
    """One learning rate per iteration: cosine from ``lr`` to ``min_lr`` over all of them, each
    epoch held at its first step's value (``schedule`` ``epoch``, the seed's) or not (``step``)."""
    lrs = cosine_schedule(lr, min_lr, epochs, steps_per_epoch)
    return held_per_epoch(lrs, steps_per_epoch) if schedule == "epoch" else lrs


def fit_classifier(
    model: Classifier,
    optimizer: torch.optim.Optimizer,
    train_batches: EpochBatches,
    steps_per_epoch: int,
    val_batches: Batches,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    checkpoint_dir: Path,
    min_lr: float = 0.0,
    lr_schedule: str = "step",
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    stage: str = "classifier",
    env: DistEnv | None = None,
) -> dict[str, float]:
    """Train ``model.trainable`` for ``epochs`` (learning rates: :func:`classifier_lrs`),
    validating and checkpointing after each epoch; resumes from ``checkpoint_dir``.

    With ``env`` distributed, ``train_batches`` and ``val_batches`` are this rank's share: the
    gradients are averaged over the ranks (sslight/evaluation/data_parallel.py), the accuracy
    counted over all of them, and rank 0 alone writes the checkpoint (every rank resumes from it).
    Returns ``top1`` (best epoch), ``top5`` (at that epoch), ``top1_last`` and ``top5_last``.
    """
    env = env or DistEnv()
    if steps_per_epoch < 1:
        raise ValueError(f"{stage}: no full training batch per epoch")
    lrs = classifier_lrs(lr, min_lr, epochs, steps_per_epoch, lr_schedule)
    state = load_checkpoint(checkpoint_dir)
    start, best, last = _resume(model, optimizer, state, stage, epochs)
    trained = for_training(model, env, device)
    for epoch in range(start, epochs):
        epoch_lrs = lrs[epoch * steps_per_epoch : (epoch + 1) * steps_per_epoch]
        batches = itertools.islice(train_batches(epoch), steps_per_epoch)
        loss = train_classifier_epoch(
            trained, batches, optimizer, epoch_lrs, weight_decay, device, amp_dtype
        )
        loss = sum_over_ranks(env, [loss])[0] / env.world_size  # every rank stops together
        if not math.isfinite(loss):
            raise FloatingPointError(f"{stage}: non-finite loss {loss} in epoch {epoch + 1}")
        sync_buffers(model, env)
        top1, top5 = evaluate_topk(model, val_batches, device, amp_dtype, env)
        last = {"top1": top1, "top5": top5}
        if top1 > best["top1"]:
            best = {"top1": top1, "top5": top5, "epoch": epoch + 1}
        state = {
            "model": model.trainable.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch + 1,
            "epochs": epochs,
            "stage": stage,
            "best": best,
            "last": last,
        }
        if env.is_main:
            save_checkpoint(state, checkpoint_dir)
            _log_epoch(stage, epoch, epochs, loss, last, best)
    if state is None:
        raise RuntimeError(f"{stage}: no epoch to run (epochs={epochs})")
    return _summary(state)


def _resume(
    model: Classifier,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any] | None,
    stage: str,
    epochs: int,
) -> tuple[int, dict[str, float], dict[str, float]]:
    """The epoch to start at and the best and last validation results so far, the model and
    optimizer restored from checkpoint ``state`` when there is one."""
    if state is None:
        return 0, {"top1": -1.0, "top5": 0.0, "epoch": -1}, {"top1": 0.0, "top5": 0.0}
    model.trainable.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log.info("%s: resuming at epoch %d/%d", stage, state["epoch"] + 1, epochs)
    return state["epoch"], state["best"], state["last"]


def _log_epoch(
    stage: str,
    epoch: int,
    epochs: int,
    loss: float,
    last: dict[str, float],
    best: dict[str, float],
) -> None:
    log.info(
        "%s epoch %d/%d: loss %.4f, val top-1 %.2f top-5 %.2f (best %.2f)",
        stage,
        epoch + 1,
        epochs,
        loss,
        last["top1"],
        last["top5"],
        best["top1"],
    )
