"""Deterministic, resumable data loading for multi-crop pretraining and evaluation.

The sampler yields ``(position, sample_seed)`` keys; the dataset hands out each image with its
seed and the collate function makes the views of the batch, each sample's from its own seed, so
the views of a sample do not depend on the number of workers, the batch it lands in, the rank
layout or batches skipped on a mid-epoch resume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from sslight.data.allocator import reuse_freed_memory
from sslight.data.batch_views import BatchedMultiCrop
from sslight.data.device_views import ImagesCollate
from sslight.data.sources import ImageSource
from sslight.data.transforms import MultiCropTransform, eval_transform

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A non-negative int64 seed that depends only on (seed, epoch, position)."""
    h = _splitmix64(seed & _MASK64)
    h = _splitmix64(h ^ (epoch & _MASK64))
    h = _splitmix64(h ^ (position & _MASK64))
    return h >> 1


class EpochSampler(Sampler[tuple[int, int]]):
    """Seeded per-epoch permutation, sharded across ranks, resumable mid-epoch.

    Epoch ``e`` uses ``torch.Generator().manual_seed(seed + e)`` (identical on every rank). With
    ``drop_last`` the permutation is truncated to whole global batches (world_size × batch_size);
    otherwise it is padded (wrapping around) to a multiple of world_size. Rank ``r`` takes
    ``perm[r::world_size]``. ``set_epoch`` to a new epoch resets the start batch to 0, so call
    ``set_start_batch`` after it when resuming.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"bad sampler layout: batch_size={batch_size}, rank={rank}, world_size={world_size}"
            )
        global_batch = batch_size * world_size
        if num_samples < 1 or (drop_last and num_samples < global_batch):
            raise ValueError(
                f"{num_samples} samples cannot fill one global batch of {global_batch} "
                f"(batch_size {batch_size} × world_size {world_size}); use a smaller batch size "
                f"or more data"
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's permutation; a different epoch resets the start batch to 0."""
        if epoch != self.epoch:
            self.start_batch = 0
        self.epoch = epoch

    def set_start_batch(self, k: int) -> None:
        """Skip the first ``k`` batches of this epoch (mid-epoch resume)."""
        if not 0 <= k <= self.batches_per_epoch:
            raise ValueError(f"start batch {k} out of range [0, {self.batches_per_epoch}]")
        self.start_batch = k

    @property
    def _epoch_total(self) -> int:
        """Number of samples in the epoch over all ranks (after truncation or padding)."""
        if self.drop_last:
            step = self.batch_size * self.world_size
            return self.num_samples // step * step
        return -(-self.num_samples // self.world_size) * self.world_size

    @property
    def samples_per_rank(self) -> int:
        """Samples this rank sees in a full epoch."""
        return self._epoch_total // self.world_size

    @property
    def batches_per_epoch(self) -> int:
        """Batches per rank in a full epoch (ignoring any skipped start)."""
        return -(-self.samples_per_rank // self.batch_size)

    def __len__(self) -> int:
        return max(0, self.samples_per_rank - self.start_batch * self.batch_size)

    def positions(self) -> list[int]:
        """This rank's dataset positions for the current epoch, after the skipped start."""
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.num_samples, generator=gen)
        total = self._epoch_total
        if total > self.num_samples:
            perm = torch.cat([perm, perm[: total - self.num_samples]])
        shard = perm[:total][self.rank :: self.world_size]
        return shard[self.start_batch * self.batch_size :].tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for position in self.positions():
            yield position, sample_seed(self.seed, self.epoch, position)


class SeededImageDataset(Dataset):
    """``dataset[(position, sample_seed)] -> (uint8 image, label, sample_seed)``: the training
    loader's items; ``MultiCropCollate`` makes their views, in the worker, a batch at a time."""

    def __init__(self, source: ImageSource, indices: torch.Tensor | None = None) -> None:
        self.source = source
        self.indices = None if indices is None else torch.as_tensor(indices, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.source) if self.indices is None else len(self.indices)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        position, seed = key
        index = position if self.indices is None else int(self.indices[position])
        image, label = self.source[index]
        return image, label, seed


class MultiCropDataset(SeededImageDataset):
    """``dataset[(position, sample_seed)] -> (views, label)``; views depend only on the seed.

    With a ``MultiCropTransform`` the views are the ones the training loader makes of that key.
    """

    def __init__(
        self,
        source: ImageSource,
        transform: Callable[[torch.Tensor], list[torch.Tensor]],
        indices: torch.Tensor | None = None,
    ) -> None:
        super().__init__(source, indices)
        self.transform = transform

    def __getitem__(self, key: tuple[int, int]) -> tuple[list[torch.Tensor], int]:  # type: ignore[override]
        image, label, seed = super().__getitem__(key)
        batched = getattr(self.transform, "batched", None)
        if batched is not None:
            return [view[0] for view in batched([image], [seed])], label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            views = self.transform(image)
        return views, label


def collate_views(
    batch: Sequence[tuple[list[torch.Tensor], int]],
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Stack each view position into ``[B, 3, h, w]``; labels into a LongTensor."""
    num_views = len(batch[0][0])
    views = [torch.stack([sample[0][v] for sample in batch]) for v in range(num_views)]
    labels = torch.tensor([sample[1] for sample in batch], dtype=torch.long)
    return views, labels


class MultiCropCollate:
    """``[(image, label, seed), ...] -> (uint8 views, labels)``: the batched multi-crop transform
    run as the loader's collate function (so inside its worker processes); the training process
    normalises the views where it trains (``views_of_batch``)."""

    def __init__(self, transform: BatchedMultiCrop) -> None:
        self.transform = transform

    def __call__(
        self, batch: Sequence[tuple[torch.Tensor, int, int]]
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        images, labels, seeds = zip(*batch, strict=True)
        views = self.transform.uint8_views(images, seeds)
        return views, torch.tensor(labels, dtype=torch.long)


class EvalDataset(Dataset):
    """``dataset[i] -> (float image, label)`` over ``source``, optionally restricted to ``indices``.

    ``transform`` is a callable on uint8 images or an int image size, meaning
    ``eval_transform(size)``.
    """

    def __init__(
        self,
        source: ImageSource,
        transform: int | Callable[[torch.Tensor], torch.Tensor],
        indices: torch.Tensor | None = None,
    ) -> None:
        self.source = source
        self.transform = eval_transform(transform) if isinstance(transform, int) else transform
        self.indices = None if indices is None else torch.as_tensor(indices, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.source) if self.indices is None else len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        index = i if self.indices is None else int(self.indices[i])
        image, label = self.source[index]
        return self.transform(image), label


def build_train_loader(
    source: ImageSource,
    transform: MultiCropTransform | BatchedMultiCrop | Callable[[torch.Tensor], list[torch.Tensor]],
    batch_size: int,
    seed: int,
    *,
    indices: torch.Tensor | None = None,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    views_in_workers: bool = True,
) -> tuple[DataLoader, EpochSampler]:
    """A multi-crop train loader and its sampler (call ``sampler.set_epoch`` every epoch).

    With a multi-crop transform each worker makes the views of a whole batch at once
    (``MultiCropCollate``), or, without ``views_in_workers``, hands over the batch's images and
    seeds for the training process to make them on its device (``ImagesCollate``,
    sslight/data/device_views.py); any other ``image -> views`` callable runs per sample, seeded
    with the sample's seed (``MultiCropDataset``)."""
    batched = transform if isinstance(transform, BatchedMultiCrop) else None
    batched = getattr(transform, "batched", batched)
    if batched is None and not views_in_workers:
        raise ValueError("views made outside the loader workers need a multi-crop transform")
    if batched is not None:
        dataset: Dataset = SeededImageDataset(source, indices)
        collate: Callable = MultiCropCollate(batched) if views_in_workers else ImagesCollate()
    else:
        dataset, collate = MultiCropDataset(source, transform, indices), collate_views
    sampler = EpochSampler(len(dataset), batch_size, seed, rank=rank, world_size=world_size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        drop_last=False,
        persistent_workers=num_workers > 0,
        worker_init_fn=reuse_freed_memory,
    )
    return loader, sampler


def build_eval_loader(
    source: ImageSource,
    image_size: int,
    batch_size: int,
    *,
    indices: torch.Tensor | None = None,
    num_workers: int = 0,
) -> DataLoader:
    """An ordered (unshuffled) loader of ``eval_transform(image_size)`` images and labels."""
    return DataLoader(
        EvalDataset(source, image_size, indices),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        drop_last=False,
        worker_init_fn=reuse_freed_memory,
    )
