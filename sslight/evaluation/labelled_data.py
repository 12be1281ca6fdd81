"""The labelled data of classifier training: the run's train and val splits (subset as in
pretraining), per-epoch training batches (augmented images, or cached features) and ordered
validation batches. Each epoch's batches depend only on (seed, epoch). Distributed, each rank
gets its share of every global batch and a contiguous shard of the validation images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from sslight.data import (
    ImageSource,
    build_eval_loader,
    build_source,
    build_train_loader,
    linear_train_transform,
    stratified_subset,
)
from sslight.engine.distributed import DistEnv
from sslight.evaluation.data_parallel import per_rank_batch

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
EpochBatches = Callable[[int], Batches]


@dataclass
class LabelledData:
    """The run's train split (restricted to ``data.train_subset``) and val split (``val_subset``);
    ``*_indices`` are positions in the source, None meaning all of it."""

    train: ImageSource
    train_indices: torch.Tensor | None
    val: ImageSource
    val_indices: torch.Tensor | None

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def train_pool(self) -> torch.Tensor:
        """Source indices of the usable training images."""
        if self.train_indices is None:
            return torch.arange(len(self.train))
        return self.train_indices


def load_labelled_data(cfg: Any) -> LabelledData:
    """Both splits of ``cfg.data.dataset``, subset as in pretraining (stratified, ``cfg.seed``)."""
    data = cfg.data

    def split(name: str, size: int | float | None) -> tuple[ImageSource, torch.Tensor | None]:
        source = build_source(
            data.dataset, data.root, name, image_size=data.image_size, download=data.download
        )
        indices = stratified_subset(source.labels, size, cfg.seed) if size else None
        return source, indices

    train, train_indices = split("train", data.train_subset)
    val, val_indices = split("val", data.val_subset)
    return LabelledData(train, train_indices, val, val_indices)


class _SingleView:
    """Adapts a one-view transform to the multi-crop dataset, which expects a list of views."""

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, image: torch.Tensor) -> list[torch.Tensor]:
        return [self.transform(image)]


def augmented_batches(
    source: ImageSource,
    indices: torch.Tensor | None,
    image_size: int,
    batch_size: int,
    seed: int,
    num_workers: int,
    env: DistEnv | None = None,
) -> tuple[EpochBatches, int]:
    """Per-epoch batches of ``linear_train_transform`` images (seeded per sample, full batches
    only) and the number of batches per epoch; with ``env``, this rank's share of each global
    batch of ``batch_size`` (``EpochSampler``'s sharding)."""
    env = env or DistEnv()
    loader, sampler = build_train_loader(
        source,
        _SingleView(linear_train_transform(image_size)),
        per_rank_batch(batch_size, env, "the training batch"),
        seed,
        indices=indices,
        num_workers=num_workers,
        rank=env.rank,
        world_size=env.world_size,
        pin_memory=torch.cuda.is_available(),
    )

    def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        sampler.set_epoch(epoch)
        for views, labels in loader:
            yield views[0], labels

    return epoch_batches, sampler.batches_per_epoch


def tensor_batches(
    features: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    seed: int,
    env: DistEnv | None = None,
) -> tuple[EpochBatches, int]:
    """Per-epoch shuffled full batches of cached features (permutation seeded by seed + epoch);
    with ``env``, this rank's contiguous share of each global batch of ``batch_size``."""
    env = env or DistEnv()
    steps, share = len(features) // batch_size, per_rank_batch(batch_size, env, "the batch")

    def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        perm = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed + epoch))
        for step in range(steps):
            first = step * batch_size + env.rank * share
            chosen = perm[first : first + share]
            yield features[chosen], labels[chosen]

    return epoch_batches, steps


def eval_batches(
    source: ImageSource,
    indices: torch.Tensor | None,
    image_size: int,
    batch_size: int,
    num_workers: int,
) -> Batches:
    """Ordered ``eval_transform`` batches; the batch size is capped by the number of images (an
    empty shard gives no batch)."""
    count = len(source) if indices is None else len(indices)
    if count == 0:
        return []
    return build_eval_loader(
        source, image_size, min(batch_size, count), indices=indices, num_workers=num_workers
    )
