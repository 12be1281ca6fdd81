"""The ``knn`` stage: weighted k-NN on the frozen evaluated backbone's features, and its floors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslight.data.loader import build_eval_loader
from sslight.data.sources import build_source
from sslight.data.subset import stratified_subset
from sslight.engine.distributed import broadcast_object, current_env, gather_rows
from sslight.engine.knn import extract_features, knn_accuracy
from sslight.evaluation.data_parallel import shard
from sslight.evaluation.floors import evaluation_floors
from sslight.weights.eval_backbone import load_eval_backbone


def knn_stage(cfg: Any, run_dir: Path, device: torch.device) -> dict[str, Any]:
    """``knn_top1`` (first k) and ``knn_top1_k<k>`` for every k, plus the floors' scores."""
    result = knn_metrics(load_eval_backbone(cfg, run_dir, device), cfg, device)
    if cfg.eval.floors:
        settings = cfg.eval.knn.model_dump(include={"k", "temperature"})
        floors = evaluation_floors(
            cfg, "knn", settings, lambda backbone: knn_metrics(backbone, cfg, device)["knn_top1"]
        )
        result.update(floors)
    return result


def knn_metrics(backbone: nn.Module, cfg: Any, device: torch.device) -> dict[str, float]:
    """k-NN accuracy of ``backbone``'s features, train split as memory, val split as queries.

    In a distributed run each rank extracts the features of a contiguous shard of each split and
    the shards are gathered back, in order, into the full banks; rank 0 scores them and every rank
    returns its scores (the same as one process computes)."""
    data, knn, env = cfg.data, cfg.eval.knn, current_env()
    splits = []
    for split, subset in (("train", data.train_subset), ("val", data.val_subset)):
        source = build_source(
            data.dataset, data.root, split, image_size=data.image_size, download=data.download
        )
        indices = stratified_subset(source.labels, subset, cfg.seed) if subset else None
        loader = build_eval_loader(
            source,
            data.image_size,
            256,
            indices=shard(indices, len(source), env),
            num_workers=data.num_workers,
        )
        features, labels = extract_features(backbone, loader, device)
        splits.append((gather_rows(env, features), gather_rows(env, labels)))
    accuracy = None
    if env.is_main:
        accuracy = knn_accuracy(*splits[0], *splits[1], knn.k, knn.temperature)
    accuracy = broadcast_object(env, accuracy)
    return {"knn_top1": accuracy[knn.k[0]], **{f"knn_top1_k{k}": v for k, v in accuracy.items()}}
