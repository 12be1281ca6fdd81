"""Multi-crop views made on the training device (``data.views_device``).

With views on the device, the loader workers only decode: each batch is the uint8 images and
their sample seeds (``ImageBatch``), and the training process makes the views of the whole batch
where it trains (``views_of_batch``). ``BatchedMultiCrop`` draws every parameter from the seeds on
the CPU and its pixel work is tensor maths, so a sample's views are drawn exactly as in the
workers; on an accelerator the resize and float maths round differently (float resize rounded
to uint8, as torchvision does off CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sslight.data.batch_ops import normalise
from sslight.data.batch_views import BatchedMultiCrop


@dataclass
class ImageBatch:
    """A batch as the workers hand it over when the views are made on the device."""

    images: list[torch.Tensor]  # uint8 [3, H, W], sizes may differ
    seeds: list[int]

    def pin_memory(self) -> ImageBatch:
        """Page-locked copies (the loader's ``pin_memory`` calls this), for async transfers."""
        return ImageBatch([image.pin_memory() for image in self.images], self.seeds)


class ImagesCollate:
    """``[(image, label, seed), ...] -> (ImageBatch, labels)``: decode only, no views."""

    def __call__(
        self, batch: Sequence[tuple[torch.Tensor, int, int]]
    ) -> tuple[ImageBatch, torch.Tensor]:
        images, labels, seeds = zip(*batch, strict=True)
        return ImageBatch(list(images), [int(s) for s in seeds]), torch.tensor(labels)


def resolve_views_device(setting: str, train_device: torch.device) -> torch.device:
    """Where the views are made: ``auto`` is the training device when it is an accelerator,
    else the loader workers (``cpu``); ``cuda`` needs training on CUDA."""
    if setting == "cuda" and train_device.type != "cuda":
        raise ValueError(f"data.views_device=cuda but training runs on {train_device.type}")
    if setting == "cpu" or train_device.type == "cpu":
        return torch.device("cpu")
    return train_device


def views_of_batch(
    batch: list[torch.Tensor] | ImageBatch,
    transform: BatchedMultiCrop | None,
    device: torch.device,
) -> list[torch.Tensor]:
    """The normalised float views of a loader batch on ``device``: moved there (as uint8 when
    the workers made them with ``BatchedMultiCrop``) and normalised there, or made there from the
    images and seeds when the workers only decoded (``transform`` is the recipe's)."""
    if isinstance(batch, ImageBatch):
        if transform is None:
            raise ValueError("a batch of images needs the multi-crop transform to make its views")
        images = [image.to(device, non_blocking=True) for image in batch.images]
        return transform(images, batch.seeds)
    views = [view.to(device, non_blocking=True) for view in batch]
    return [view if view.is_floating_point() else normalise(view) for view in views]
