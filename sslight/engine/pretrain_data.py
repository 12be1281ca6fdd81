"""What a pretraining run reads: the multi-crop training loader and the k-NN monitor's loaders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader

from sslight.data import (
    BatchedMultiCrop,
    CropSpec,
    EpochSampler,
    ImageSource,
    build_eval_loader,
    build_multicrop,
    build_source,
    build_train_loader,
    resolve_views_device,
    stratified_subset,
)
from sslight.engine.distributed import DistEnv
from sslight.engine.knn import extract_features, knn_accuracy
from sslight.engine.runtime import Runtime
from sslight.methods import METHODS, evaluated_network
from sslight.methods.base import SSLMethod


@dataclass
class PretrainData:
    source: ImageSource
    loader: DataLoader
    sampler: EpochSampler
    steps_per_epoch: int
    monitor: tuple[DataLoader, DataLoader] | None
    device_views: BatchedMultiCrop | None = None  # set when the training device makes the views


def _crops(crops: Any) -> CropSpec:
    return CropSpec(crops.number, crops.size, tuple(crops.scale))


def build_data(cfg: Any, env: DistEnv, device: torch.device) -> PretrainData:
    """Multi-crop training loader (sharded over ``env``) and, with the k-NN monitor on, eval
    loaders over the training subset and the validation set. With ``data.views_device`` on
    the training ``device`` the loader only decodes and ``device_views`` makes the views."""
    data, train = cfg.data, cfg.train
    if train.batch_size % env.world_size:
        raise ValueError(
            f"train.batch_size {train.batch_size} is not divisible by {env.world_size} processes"
        )
    source = build_source(
        data.dataset, data.root, "train", image_size=data.image_size, download=data.download
    )
    indices = (
        stratified_subset(source.labels, data.train_subset, cfg.seed) if data.train_subset else None
    )
    transform = build_multicrop(
        METHODS.get(cfg.method).augmentation,
        _crops(cfg.views.global_crops),
        _crops(cfg.views.local_crops),
    )
    per_process = train.batch_size // env.world_size
    available = len(indices) if indices is not None else len(source)
    if available < train.batch_size:
        raise ValueError(
            f"data: {available} training images give no full batch of {train.batch_size}; "
            "lower train.batch_size or enlarge data.train_subset"
        )
    on_device = resolve_views_device(data.views_device, device).type != "cpu"
    loader, sampler = build_train_loader(
        source,
        transform,
        per_process,
        cfg.seed,
        indices=indices,
        num_workers=data.num_workers,
        rank=env.rank,
        world_size=env.world_size,
        pin_memory=torch.cuda.is_available(),
        views_in_workers=not on_device,
    )
    steps = sampler.batches_per_epoch
    if train.max_steps_per_epoch:
        steps = min(steps, train.max_steps_per_epoch)
    monitor = None
    if cfg.eval.knn.monitor:
        val = build_source(
            data.dataset, data.root, "val", image_size=data.image_size, download=data.download
        )
        val_idx = (
            stratified_subset(val.labels, data.val_subset, cfg.seed) if data.val_subset else None
        )
        batch, workers = max(64, per_process), data.num_workers
        monitor = (
            build_eval_loader(source, data.image_size, batch, indices=indices, num_workers=workers),
            build_eval_loader(val, data.image_size, batch, indices=val_idx, num_workers=workers),
        )
    device_views = transform.batched if on_device else None
    return PretrainData(source, loader, sampler, steps, monitor, device_views)


def knn_monitor(
    method: SSLMethod, data: PretrainData, cfg: Any, rt: Runtime
) -> tuple[float, torch.Tensor]:
    """Top-1 (%) of a weighted k-NN classifier on the evaluated backbone (train → val), and the
    training images' features (the collapse monitor's ``feature_std`` reads them). The evaluated
    backbone is ``eval.network``'s (the student by default, as the seed's training-time k-NN)."""
    assert data.monitor is not None
    backbone = evaluated_network(method, cfg.eval.network).backbone
    train_f, train_y = extract_features(backbone, data.monitor[0], rt.device, rt.channels_last)
    val_f, val_y = extract_features(backbone, data.monitor[1], rt.device, rt.channels_last)
    k = cfg.eval.knn.monitor_k
    accuracy = knn_accuracy(train_f, train_y, val_f, val_y, [k], cfg.eval.knn.temperature)[k]
    return accuracy, train_f
