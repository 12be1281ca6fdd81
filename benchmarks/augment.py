"""Multi-crop augmentation throughput (views/s of one single-threaded worker): our DINO recipe
(sslight/data/transforms.py) against lightly's ``DINOTransform`` on the same images.

Each side works as its loader does: ours makes the views of a batch of uint8 ``[3, H, W]``
tensors with their sample seeds at once (``BatchedMultiCrop``, the training loader's collate
function); lightly transforms one PIL image at a time (what its datasets yield). Same crops,
scales and DINO parameters on both sides.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import GEOMETRIES, fashion_images, versus_lightly
from benchmarks.lightly_step import PILDataset, lightly_transform
from sslight.data import CropSpec, build_multicrop
from sslight.data.allocator import reuse_freed_memory
from sslight.data.batch_views import BatchedMultiCrop

TARGET = 2.0  # ours ≥ 2× lightly's views/s
BATCH = 64  # images per loader batch


def views_per_second(transform: Callable[[Any], list], images: list[Any]) -> float:
    start = time.perf_counter()
    views = sum(len(transform(image)) for image in images)
    return views / (time.perf_counter() - start)


def batched_views_per_second(transform: BatchedMultiCrop, images: list[Any], batch: int) -> float:
    start = time.perf_counter()
    views = 0
    for first in range(0, len(images), batch):
        chunk = images[first : first + batch]
        views += len(chunk) * len(transform(chunk, range(first, first + len(chunk))))
    return views / (time.perf_counter() - start)


def compare(geometry: str, *, quick: bool) -> dict[str, Any]:
    geo = GEOMETRIES[geometry]
    count, rounds, batch = (8, 1, 4) if quick else (4 * BATCH, 7, BATCH)
    images, labels = fashion_images(count, geo.global_size)
    ours = build_multicrop(
        "dino",
        CropSpec(2, geo.global_size, geo.global_scale),
        CropSpec(geo.local_number, geo.local_size, geo.local_scale),
    )
    pil_images = PILDataset(images, labels, None).images
    theirs = lightly_transform(geo)
    tensors = list(images)
    return versus_lightly(
        lambda: batched_views_per_second(ours.batched, tensors, batch),
        lambda: views_per_second(theirs, pil_images),
        rounds,
        TARGET,
        unit="views/s",
        batch=batch,
    )


def run(quick: bool = False, threads: int | None = None) -> dict[str, Any]:
    """One worker's view: a single thread, whatever ``threads`` the other families use, and
    the allocator settings our loader workers start with, for both sides."""
    del threads
    reuse_freed_memory()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        geometries = ["32px"] if quick else list(GEOMETRIES)
        return {f"augment_vs_lightly/dino_{g}": compare(g, quick=quick) for g in geometries}
    finally:
        torch.set_num_threads(previous)
