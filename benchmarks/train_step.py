"""Training throughput (images/s, augmentation and data loading included) and peak memory of
every method × backbone, each configuration in a fresh process.

CPU: fp32, peak RSS of that process. CUDA: bf16 autocast, ``torch.cuda.max_memory_allocated``.
The step is the trainer's (sslight/engine/train_one_epoch.py): forward of every crop, backward, the
method's hooks around the optimiser step (EMA teacher, frozen last layer) and the update.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from benchmarks.common import (
    GEOMETRIES,
    Geometry,
    fashion_images,
    loader_workers,
    peak_rss_kib,
    set_threads,
)
from sslight.data import TensorImageSource, build_multicrop, build_train_loader, views_of_batch
from sslight.data.transforms import CropSpec
from sslight.engine.optim import build_optimizer, set_lr_and_weight_decay
from sslight.engine.runtime import Runtime
from sslight.engine.trainer import prepare_method
from sslight.methods import METHODS
from sslight.methods.base import StepContext

METHOD_NAMES = ("dino", "swav", "moco")
BACKBONE_NAMES = ("mobilenet_v2", "resnet18", "resnet34", "vit_tiny")
BATCH = {"32px": 32, "96px": 8, "224px": 64}
STEPS_PER_EPOCH = 100  # the step counter starts in epoch 1: DINO's last layer is no longer frozen
CLASSES = [f"class{i}" for i in range(10)]


def bench_config(
    method: str,
    backbone: str,
    geometry: Geometry,
    batch_size: int,
    *,
    device: str = "cpu",
    compile: bool = False,
    joint_probe: bool = True,
    channels_last: str = "auto",
) -> Any:
    """The resolved run config of one benchmark cell (each method's paper recipe otherwise)."""
    from sslight.config import resolve

    return resolve(
        {
            "method": method,
            "backbone": backbone,
            "views": geometry.views(),
            "data": {"dataset": "fashion_mnist", "image_size": geometry.global_size},
            "train": {
                "epochs": 10,
                "batch_size": batch_size,
                "warmup_epochs": 0,
                "device": device,
                "channels_last": channels_last,
                "compile": compile,
                "joint_probe": joint_probe,
                "progress": False,
            },
            "eval": {"knn": {"monitor": False}},
            "stages": ["pretrain"],
            "output_dir": "runs/bench",
        },
        source="benchmark",
    )


class TrainStep:
    """One pretraining iteration of ``cfg``'s method, as the trainer runs it."""

    def __init__(self, cfg: Any) -> None:
        self.rt = rt = Runtime.from_config(cfg.train, cfg.backbone)
        method = METHODS.get(cfg.method).build(cfg, num_classes=len(CLASSES))
        self.method = method = prepare_method(method, rt, cfg.train.epochs, STEPS_PER_EPOCH)
        self.optimizer = build_optimizer(
            cfg.train.optimizer, method.trainable_modules(), cfg.train.momentum
        )
        set_lr_and_weight_decay(self.optimizer, 1e-3, cfg.train.weight_decay)
        self.step_index = STEPS_PER_EPOCH

    def __call__(self, views: list[torch.Tensor], labels: torch.Tensor) -> float:
        ctx = StepContext(self.step_index // STEPS_PER_EPOCH, self.step_index, STEPS_PER_EPOCH)
        views = views_of_batch(views, None, self.rt.device)
        labels = labels.to(self.rt.device, non_blocking=True)
        with self.rt.autocast():
            out = self.method(views, labels, ctx)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.method.before_optimizer_step(ctx)
        self.optimizer.step()
        self.method.after_optimizer_step(ctx)
        self.step_index += 1
        return out.logs["loss"]


def our_loader(
    cfg: Any, images: torch.Tensor, labels: torch.Tensor, workers: int, persistent: bool = True
) -> DataLoader:
    """The trainer's multi-crop loader (sslight.data) over in-memory uint8 images;
    ``persistent=False`` stops its workers with each pass (for interleaved rounds)."""
    views = cfg.views
    transform = build_multicrop(
        METHODS.get(cfg.method).augmentation,
        CropSpec(2, views.global_crops.size, tuple(views.global_crops.scale)),
        CropSpec(views.local_crops.number, views.local_crops.size, tuple(views.local_crops.scale)),
    )
    source = TensorImageSource(images, labels, CLASSES)
    loader, _ = build_train_loader(
        source,
        transform,
        cfg.train.batch_size,
        seed=0,
        num_workers=workers,
        pin_memory=cfg.train.device == "cuda",
    )
    if not persistent and workers:
        loader = DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=loader.sampler,
            num_workers=workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
        )
    return loader


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(
    step: Callable[[list[torch.Tensor], torch.Tensor], Any],
    loader: DataLoader,
    warmup: int,
    steps: int,
    device: torch.device,
) -> float:
    """Images/s over ``steps`` iterations after ``warmup`` untimed ones, loader included."""
    batches = iter(loader)
    for _ in range(warmup):
        step(*next(batches))
    synchronize(device)
    start = time.perf_counter()
    seen = 0
    for _ in range(steps):
        views, labels = next(batches)
        step(views, labels)
        seen += labels.shape[0]
    synchronize(device)
    rate = seen / (time.perf_counter() - start)
    del batches  # a non-persistent loader stops its workers here
    return rate


def measure_one(
    method: str, backbone: str, geometry: str, *, device: str, quick: bool, threads: int
) -> dict[str, Any]:
    """Build and time one configuration in this process (call it in a fresh one)."""
    set_threads(threads)
    geo = GEOMETRIES[geometry]
    batch = 4 if quick else BATCH[geometry] * (4 if device == "cuda" else 1)
    warmup, steps = (1, 1) if quick else (1, 2)
    cfg = bench_config(method, backbone, geo, batch, device=device)
    images, labels = fashion_images(batch * (warmup + steps), geo.global_size)
    step = TrainStep(cfg)
    workers = 0 if quick else loader_workers(threads)
    loader = our_loader(cfg, images, labels, workers)
    rate = throughput(step, loader, warmup, steps, step.rt.device)
    result: dict[str, Any] = {"images_per_s": round(rate, 2), "batch_size": batch}
    if step.rt.device.type == "cuda":
        result["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        result["precision"] = "bf16"
    else:
        result["peak_rss_mib"] = round(peak_rss_kib() / 1024, 1)
        result["precision"] = "fp32"
    result["channels_last"] = step.rt.channels_last
    return result


def run(quick: bool = False, device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """Every method × backbone × geometry, one fresh process each: ``{"<m>_<b>_<g>": {...}}``."""
    threads = set_threads(threads)
    methods = METHOD_NAMES[:1] if quick else METHOD_NAMES
    backbones = BACKBONE_NAMES[:1] if quick else BACKBONE_NAMES
    geometries = ["32px"] if quick else list(GEOMETRIES)
    results: dict[str, Any] = {}
    for geometry in geometries:
        for method in methods:
            for backbone in backbones:
                spec = {"method": method, "backbone": backbone, "geometry": geometry}
                spec |= {"device": device, "quick": quick, "threads": threads}
                results[f"{method}_{backbone}_{geometry}"] = _in_fresh_process(spec)
    return {"threads": threads, "device": device, "configs": results}


def _in_fresh_process(spec: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.train_step", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        timeout=600,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="time one configuration (used by run())")
    parser.add_argument("spec", help='JSON: {"method", "backbone", "geometry", "device", ...}')
    spec = json.loads(parser.parse_args(argv).spec)
    print(json.dumps(measure_one(**spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
