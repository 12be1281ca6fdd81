"""Achieved FLOP/s of our training step as a fraction of this machine's measured matmul peak.

FLOPs of one step (forward and backward, every crop, teacher included) are counted with
``torch.utils.flop_counter.FlopCounterMode``; the step is timed on a fixed batch (no data loading)
and the peak is the best rate of a square fp32 ``torch.mm`` (bf16 on CUDA) at the same threads.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import GEOMETRIES, fashion_images, median, set_threads
from benchmarks.train_step import TrainStep, bench_config, our_loader, synchronize

CELLS = (("dino", "mobilenet_v2"), ("dino", "resnet18"))


def matmul_peak(
    device: torch.device, dtype: torch.dtype = torch.float32, n: int = 1024, repeats: int = 5
) -> float:
    """Best FLOP/s of ``n × n @ n × n`` over ``repeats`` timed calls (after one warm-up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def step_flops(step: TrainStep, views: list[torch.Tensor], labels: torch.Tensor) -> int:
    """FLOPs of one training step (this runs the step once)."""
    with FlopCounterMode(display=False) as counter:
        step(views, labels)
    return counter.get_total_flops()


def step_seconds(
    step: TrainStep, views: list[torch.Tensor], labels: torch.Tensor, repeats: int
) -> float:
    """Median seconds of one step on a fixed batch, after one warm-up step."""
    step(views, labels)
    times = []
    for _ in range(repeats):
        synchronize(step.rt.device)
        start = time.perf_counter()
        step(views, labels)
        synchronize(step.rt.device)
        times.append(time.perf_counter() - start)
    return median(times)


def fixed_batch(cfg: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One multi-crop batch of real images, made by the trainer's loader."""
    batch = cfg.train.batch_size
    images, labels = fashion_images(batch, cfg.views.global_crops.size)
    return next(iter(our_loader(cfg, images, labels, workers=0)))


def efficiency(
    method: str,
    backbone: str,
    geometry: Any,
    batch: int,
    *,
    device: str,
    peak: float,
    repeats: int,
    compile: bool = False,
    channels_last: str = "auto",
) -> dict[str, Any]:
    """FLOPs per step (counted eagerly), step time (compiled if asked) and the peak fraction."""
    settings = {"device": device, "channels_last": channels_last}
    cfg = bench_config(method, backbone, geometry, batch, **settings)
    views, labels = fixed_batch(cfg)
    flops = step_flops(TrainStep(cfg), views, labels)
    if compile:
        cfg = bench_config(method, backbone, geometry, batch, compile=True, **settings)
    seconds = step_seconds(TrainStep(cfg), views, labels, repeats)
    achieved = flops / seconds
    return {
        "batch_size": batch,
        "gflop_per_step": round(flops / 1e9, 2),
        "step_seconds": round(seconds, 4),
        "achieved_gflop_s": round(achieved / 1e9, 2),
        "fraction_of_peak": round(achieved / peak, 4),
    }


def run(quick: bool = False, threads: int | None = None) -> dict[str, Any]:
    threads = set_threads(threads)
    device = torch.device("cpu")
    n, repeats = (256, 1) if quick else (1024, 5)
    peak = matmul_peak(device, n=n, repeats=repeats)
    cells = CELLS[:1] if quick else CELLS
    results = {
        f"{method}_{backbone}_32px": efficiency(
            method,
            backbone,
            GEOMETRIES["32px"],
            4 if quick else 32,
            device="cpu",
            peak=peak,
            repeats=1 if quick else 3,
        )
        for method, backbone in cells
    }
    # The best of a second measurement after the steps: on a shared machine a busy moment can
    # hide the peak, which would inflate every fraction.
    second = matmul_peak(device, n=n, repeats=repeats)
    if second > peak:
        for entry in results.values():
            entry["fraction_of_peak"] = round(entry["fraction_of_peak"] * peak / second, 4)
        peak = second
    return {"threads": threads, "matmul_peak_gflop_s": round(peak / 1e9, 2), "steps": results}
