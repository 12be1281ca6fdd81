"""Does the GPU wait for data? Images/s of the training loader on ImageNet-sized JPEGs (the
imagenet_views folder) with the views made in the loader workers or on the training device
(``data.views_device``), loading alone and with the DINO MobileNetV2 step at 224 px.

Run by the GPU family whenever CUDA is present; on the CPU the same code runs with the
"device" views made in the training process (the smoke test).
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from benchmarks.common import GEOMETRIES, PAPER, loader_workers
from benchmarks.imagenet_views import jpeg_folder
from benchmarks.train_step import TrainStep, bench_config, synchronize
from sslight.data import CropSpec, build_multicrop, build_source, build_train_loader
from sslight.data.device_views import views_of_batch

BATCH = 64
COUNT = 256  # images in the folder: four batches an epoch


def _loader(root: str, geometry: Any, batch: int, workers: int, in_workers: bool, pin: bool):
    """The trainer's loader over ``root`` and the transform the training process runs (None
    when the workers make the views)."""
    transform = build_multicrop(
        "dino",
        CropSpec(2, geometry.global_size, geometry.global_scale),
        CropSpec(geometry.local_number, geometry.local_size, geometry.local_scale),
    )
    loader, sampler = build_train_loader(
        build_source("image_folder", root, "train"),
        transform,
        batch,
        seed=0,
        num_workers=workers,
        pin_memory=pin,
        views_in_workers=in_workers,
    )
    return loader, sampler, None if in_workers else transform.batched


def images_per_second(
    loader: Any, sampler: Any, transform: Any, device: torch.device, epochs: int, step: Any = None
) -> float:
    """Images/s over ``epochs`` passes after one untimed pass: the views of every batch on
    ``device`` and, given a ``step``, a training step on them."""
    seen, start = 0, 0.0
    for epoch in range(epochs + 1):
        if epoch == 1:
            synchronize(device)
            start, seen = time.perf_counter(), 0
        sampler.set_epoch(epoch)
        for batch, labels in loader:
            views = views_of_batch(batch, transform, device)
            if step is not None:
                step(views, labels)
            seen += labels.shape[0]
    synchronize(device)
    return seen / (time.perf_counter() - start)


def measure(device: str, quick: bool = False) -> dict[str, Any]:
    """Loading alone and loading + DINO MobileNetV2 step, views in the workers vs on ``device``."""
    geometry = GEOMETRIES["32px"] if quick else PAPER
    count, batch, epochs = (8, 4, 1) if quick else (COUNT, BATCH, 3)
    workers = 0 if quick else loader_workers(os.cpu_count() or 1)
    root, dev = str(jpeg_folder(count)), torch.device(device)
    step = TrainStep(bench_config("dino", "mobilenet_v2", geometry, batch, device=device))
    result: dict[str, Any] = {"workers": workers, "batch_size": batch, "images": count}
    for where, in_workers in (("workers", True), ("device", False)):
        loader, sampler, transform = _loader(
            root, geometry, batch, workers, in_workers, pin=dev.type == "cuda"
        )
        result[f"views_in_{where}"] = {
            "loading_images_per_s": round(
                images_per_second(loader, sampler, transform, dev, epochs), 1
            ),
            f"dino_mobilenet_v2_{geometry.name}_images_per_s": round(
                images_per_second(loader, sampler, transform, dev, epochs, step), 1
            ),
        }
    return result
