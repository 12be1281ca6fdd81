"""What every benchmark family shares: geometries, real images, threads and interleaved timing."""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms.v2 import functional as F


@dataclass(frozen=True)
class Geometry:
    """Two global crops of ``global_size`` px and ``local_number`` locals of ``local_size`` px,
    with SSLight's scales (globals 0.3–1, locals 0.05–0.3; Tan et al. 2023, Sec. 4)."""

    name: str
    global_size: int
    local_size: int
    local_number: int = 6
    global_scale: tuple[float, float] = (0.3, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.3)

    def views(self) -> dict[str, Any]:
        """The run config's ``views`` section for this geometry."""
        return {
            "policy": "custom",
            "global_crops": {"number": 2, "size": self.global_size, "scale": self.global_scale},
            "local_crops": {
                "number": self.local_number,
                "size": self.local_size,
                "scale": self.local_scale,
            },
            "loss_weights": {"global_global": 0.4, "global_local": 0.6},
        }


# The paper's 2×224² + 6×96² geometry scaled down for CPUs, and the paper's own (GPU only).
GEOMETRIES = {
    "32px": Geometry("32px", 32, 16),
    "96px": Geometry("96px", 96, 48),
}
PAPER = Geometry("224px", 224, 96)


def set_threads(threads: int | None) -> int:
    """Use ``threads`` intra-op threads (default: every core); return the number used."""
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads


def loader_workers(threads: int) -> int:
    """Data-loading processes beside the training process: one per two cores, at least one."""
    return max(1, threads // 2)


def fashion_images(count: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` Fashion-MNIST training images, RGB uint8 ``[N, 3, size, size]``
    (bicubic upsampling of the 28 px originals), and their labels."""
    from sslight.data import build_source

    source = build_source("fashion_mnist", None, "train")
    images = source.images[:count].unsqueeze(1).expand(-1, 3, -1, -1)
    images = F.resize(images, [size, size], antialias=True).contiguous()
    return images, source.labels[:count].clone()


def interleaved(candidates: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Alternate short rounds of each candidate (each returns its own rate) ``rounds`` times.

    Under a shared, busy CPU the load drifts; alternating rounds spreads the drift evenly over
    the candidates, so the ratio of their medians stays fair. The order flips every round.
    """
    rates: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            rates[name].append(candidates[name]())
    return rates


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def comparison(ours: float, theirs: float, target: float | None = None, **extra: Any) -> dict:
    """``{"ours", "lightly", "ratio"}`` (+ ``target``/``met`` when there is a target)."""
    entry: dict[str, Any] = {"ours": round(ours, 2), "lightly": round(theirs, 2)}
    entry["ratio"] = round(ours / theirs, 3) if theirs > 0 else None
    if target is not None:
        entry["target"] = target
        entry["met"] = entry["ratio"] is not None and entry["ratio"] >= target
    entry.update(extra)
    return entry


def versus_lightly(
    ours: Callable[[], float],
    lightly: Callable[[], float],
    rounds: int,
    target: float,
    **extra: Any,
) -> dict:
    """Interleaved rounds of our rate and lightly's, compared by their medians (``comparison``),
    with every round's rates kept under ``rounds``. One untimed round of each side goes first:
    start-up (imports, compiled kernels, caches) is a worker's once, not its rate; its seconds
    are kept under ``first_round_s``."""
    first = {"ours": round(timed(ours), 2), "lightly": round(timed(lightly), 2)}
    rates = interleaved({"ours": ours, "lightly": lightly}, rounds)
    return comparison(
        median(rates["ours"]),
        median(rates["lightly"]),
        target,
        **extra,
        rounds=rates,
        first_round_s=first,
    )


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_rss_kib(field: str = "VmHWM") -> int:
    """This process's peak resident set size in KiB: ``VmHWM`` of /proc/self/status, which starts
    afresh at exec (``ru_maxrss`` keeps the forking parent's size); ``field="VmRSS"``: the
    current size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
