"""Multi-crop augmentation throughput (views/s of one single-threaded worker): our DINO recipe
(sslight/data/transforms.py) against lightly's ``DINOTransform`` on the same images.

Each side gets the images as its loader hands them over: ours uint8 ``[3, H, W]`` tensors, lightly
PIL images (what its datasets yield). Same crops, scales and DINO parameters on both sides.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import GEOMETRIES, comparison, fashion_images, interleaved, median
from benchmarks.lightly_step import PILDataset, lightly_transform
from sslight.data import CropSpec, build_multicrop

TARGET = 2.0  # ours ≥ 2× lightly's views/s


def views_per_second(transform: Callable[[Any], list], images: list[Any]) -> float:
    start = time.perf_counter()
    views = sum(len(transform(image)) for image in images)
    return views / (time.perf_counter() - start)


def compare(geometry: str, *, quick: bool) -> dict[str, Any]:
    geo = GEOMETRIES[geometry]
    count, rounds = (4, 1) if quick else (64, 7)
    images, labels = fashion_images(count, geo.global_size)
    ours = build_multicrop(
        "dino",
        CropSpec(2, geo.global_size, geo.global_scale),
        CropSpec(geo.local_number, geo.local_size, geo.local_scale),
    )
    pil_images = PILDataset(images, labels, None).images
    theirs = lightly_transform(geo)
    tensors = list(images)
    rates = interleaved(
        {
            "ours": lambda: views_per_second(ours, tensors),
            "lightly": lambda: views_per_second(theirs, pil_images),
        },
        rounds,
    )
    return comparison(
        median(rates["ours"]), median(rates["lightly"]), TARGET, unit="views/s", rounds=rates
    )


def run(quick: bool = False, threads: int | None = None) -> dict[str, Any]:
    """One worker's view: a single thread, whatever ``threads`` the other families use."""
    del threads
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        geometries = ["32px"] if quick else list(GEOMETRIES)
        return {f"augment_vs_lightly/dino_{g}": compare(g, quick=quick) for g in geometries}
    finally:
        torch.set_num_threads(previous)
