"""What the data-parallel evaluations share: the global batch split over the ranks, contiguous
shards of an evaluation set, the model wrapped for gradient averaging, and its batch norm.

A configured ``eval.*.batch_size`` is the global batch, as ``train.batch_size`` is in pretraining:
each of the ``world_size`` ranks trains on ``batch_size / world_size`` images of it and
``DistributedDataParallel`` averages the gradients, so a step sees the gradient of the whole
batch (the per-rank losses are means over equal halves). Evaluation sets are cut into contiguous
shards, one per rank, so rows gathered in rank order come back in the dataset's order.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sslight.engine.distributed import DistEnv
from sslight.engine.sync_batch_norm import convert_cpu_sync_batchnorm


def per_rank_batch(global_batch: int, env: DistEnv, key: str) -> int:
    """This rank's share of ``global_batch`` (``key`` names the setting in the error)."""
    if global_batch % env.world_size:
        raise ValueError(
            f"{key} {global_batch} is not divisible by the {env.world_size} processes of the "
            f"job; use a multiple of {env.world_size}"
        )
    return global_batch // env.world_size


def shard(indices: torch.Tensor | None, length: int, env: DistEnv) -> torch.Tensor | None:
    """This rank's contiguous share of ``indices`` (None: all ``length`` items); unchanged for a
    single process."""
    if not env.enabled:
        return indices
    every = torch.arange(length) if indices is None else torch.as_tensor(indices)
    return every.tensor_split(env.world_size)[env.rank]


def for_training(model: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
    """``model`` wrapped to average its gradients over the ranks (itself for one process);
    each forward starts from rank 0's buffers, and ``sync_buffers`` aligns them before an
    evaluation (a forward in training mode updates each rank's batch-norm statistics)."""
    if not env.enabled:
        return model
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def sync_buffers(model: nn.Module, env: DistEnv) -> None:
    """Rank 0's buffers (batch-norm statistics) on every rank: what rank 0 checkpoints is what
    every rank evaluates."""
    if env.enabled:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, src=0)


def sync_batch_norm(model: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
    """``model`` with its batch norm computed over the global batch when distributed, as the seed
    fine-tunes: ``SyncBatchNorm`` on GPUs, ``CpuSyncBatchNorm`` on CPUs (where PyTorch's has no
    kernel). Unchanged for a single process."""
    if not env.enabled:
        return model
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return convert_cpu_sync_batchnorm(model)
