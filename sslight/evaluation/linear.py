"""Linear evaluation on a frozen backbone (DINO ``eval_linear.py``; SSLight seed repo settings).

CNNs: LARS, lr 0.05 × batch/256 (0.8 at 4096), 100 epochs, wd 0, cosine to 1e-6 set once per
epoch; ViT-Tiny: SGD, lr 0.01 × batch/256 (0.04 at 1024), on the concatenated CLS tokens of the
last 4 blocks. Training images get
RandomResizedCrop + flip, validation images resize + centre crop; the best val top-1 is reported.
With ``cached_features`` the features of the un-augmented training images are computed once and
the linear layer trains on them (the fast path on a CPU). In a distributed run each rank trains
on its share of every global batch (``eval.linear.batch_size``), extracts the features of its
shard of the images and counts the accuracy on its shard of the validation set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslight.engine.distributed import current_env, gather_rows
from sslight.engine.optim import build_optimizer
from sslight.engine.rundir import RunDir
from sslight.evaluation.classifier import (
    Classifier,
    amp_dtype_for,
    augmented_batches,
    completed_result,
    eval_batches,
    fit_classifier,
    linear_head,
    load_labelled_data,
    tensor_batches,
)
from sslight.evaluation.data_parallel import per_rank_batch, shard
from sslight.evaluation.features import FeatureExtractor, extract

DEFAULT_BASE_LR = {"lars": 0.05, "sgd": 0.01}


def linear_optimizer(family: str, choice: str) -> str:
    """``auto`` means LARS for CNNs and SGD for ViTs (the seed repo's choice)."""
    if choice != "auto":
        return choice
    return "sgd" if family == "vit" else "lars"


def _named(result: dict[str, float]) -> dict[str, float]:
    return {f"linear_{key}": value for key, value in result.items()}


def linear_eval(
    backbone: nn.Module, cfg: Any, run_dir: Path, device: torch.device
) -> dict[str, float]:
    """Train a linear classifier on ``backbone``'s frozen features; resumable.

    Returns ``linear_top1`` (best epoch), ``linear_top5`` (at that epoch), ``linear_top1_last``
    and ``linear_top5_last``, in percent. Checkpoints go to ``run_dir/checkpoints/linear``.
    """
    lin, data_cfg = cfg.eval.linear, cfg.data
    checkpoint_dir = RunDir(run_dir).checkpoints / "linear"
    done = completed_result(checkpoint_dir, lin.epochs)
    if done is not None:
        return _named(done)

    env = current_env()
    data = load_labelled_data(cfg)
    amp_dtype = amp_dtype_for(cfg, device)
    extractor = FeatureExtractor(backbone, lin.n_last_blocks).to(device).eval()
    head = linear_head(extractor.out_dim, data.num_classes, cfg.seed).to(device)
    pool = len(data.train_pool) // env.world_size * env.world_size
    batch = min(lin.batch_size, pool)  # the global batch
    share = per_rank_batch(batch, env, "eval.linear.batch_size")
    size, workers = data_cfg.image_size, data_cfg.num_workers
    val_shard = shard(data.val_indices, len(data.val), env)
    val = eval_batches(data.val, val_shard, size, share, workers)

    if lin.cached_features:
        train_shard = shard(data.train_indices, len(data.train), env)
        train_images = eval_batches(data.train, train_shard, size, share, workers)
        train_f, train_y = extract(extractor, train_images, device, amp_dtype)
        train_f, train_y = gather_rows(env, train_f), gather_rows(env, train_y)
        val_f, val_y = extract(extractor, val, device, amp_dtype)
        model = Classifier(nn.Identity(), head, frozen_features=True)
        train, steps = tensor_batches(train_f.to(device), train_y.to(device), batch, cfg.seed, env)
        val = list(zip(val_f.split(share), val_y.split(share), strict=True))
    else:
        model = Classifier(extractor, head, frozen_features=True)
        train, steps = augmented_batches(
            data.train, data.train_indices, size, batch, cfg.seed, workers, env
        )
    if lin.max_steps_per_epoch:
        steps = min(steps, lin.max_steps_per_epoch)

    name = linear_optimizer(backbone.family, lin.optimizer)
    optimizer = build_optimizer(name, [head], momentum=lin.momentum)
    base_lr = lin.base_lr if lin.base_lr is not None else DEFAULT_BASE_LR[name]
    result = fit_classifier(
        model,
        optimizer,
        train,
        steps,
        val,
        epochs=lin.epochs,
        lr=base_lr * batch / 256,
        min_lr=lin.min_lr,
        lr_schedule=lin.lr_schedule,
        weight_decay=lin.weight_decay,
        checkpoint_dir=checkpoint_dir,
        device=device,
        amp_dtype=amp_dtype,
        stage="linear",
        env=env,
    )
    return _named(result)
