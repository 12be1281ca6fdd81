"""The GPU benchmark: model FLOPs utilisation (MFU) of DINO on ViT-Tiny and MobileNetV2 at the
paper's geometry (2 × 224² globals + 6 × 96² locals), bf16 autocast, channels_last and
``torch.compile`` on, against this GPU's measured bf16 matmul peak.

    python -m benchmarks.run --only gpu          # on a CUDA machine; skipped elsewhere

Then, whether the GPU waits for data: the loader's images/s on ImageNet-sized JPEGs with the
views made in the workers or on the GPU, alone and with the step (benchmarks/gpu_views.py).
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks import gpu_views
from benchmarks.common import GEOMETRIES, PAPER, Geometry
from benchmarks.flops import efficiency, matmul_peak

BACKBONES = ("vit_tiny", "mobilenet_v2")
SKIP_MESSAGE = "no CUDA device visible: the GPU benchmark (MFU at 224 px, bf16) was skipped"


def plan(quick: bool) -> tuple[Geometry, int, int, int]:
    """(geometry, batch per step, timed steps, matmul size): the paper's geometry, or a tiny
    one that exercises the same code in seconds."""
    if quick:
        return GEOMETRIES["32px"], 2, 1, 256
    return PAPER, 64, 10, 8192


def measure(device: str, quick: bool = False, compile: bool = True) -> dict[str, Any]:
    """MFU of each backbone's DINO step on ``device`` (bf16 on CUDA, fp32 on CPU)."""
    geometry, batch, repeats, n = plan(quick)
    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    peak = matmul_peak(dev, dtype, n=n, repeats=3 if quick else 10)
    results: dict[str, Any] = {}
    for backbone in BACKBONES:
        entry = efficiency(
            "dino",
            backbone,
            geometry,
            batch,
            device=device,
            peak=peak,
            repeats=repeats,
            compile=compile,
            channels_last="on",
        )
        entry["mfu"] = entry.pop("fraction_of_peak")
        results[f"dino_{backbone}_{geometry.name}"] = entry
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    return {
        "device": name,
        "precision": "bf16" if dev.type == "cuda" else "fp32",
        "compile": compile,
        f"matmul_peak_{'bf16' if dev.type == 'cuda' else 'fp32'}_tflop_s": round(peak / 1e12, 2),
        "steps": results,
    }


def run(quick: bool = False, threads: int | None = None) -> dict[str, Any]:
    del threads
    if not torch.cuda.is_available():
        print(f"gpu: {SKIP_MESSAGE}")
        return {"skipped": SKIP_MESSAGE}
    result = measure("cuda", quick=quick)
    for key, entry in result["steps"].items():
        print(f"gpu: {key}: MFU {entry['mfu']:.1%} ({entry['achieved_gflop_s'] / 1e3:.1f} TFLOP/s)")
    result["views"] = gpu_views.measure("cuda", quick=quick)
    for where in ("views_in_workers", "views_in_device"):
        print(f"gpu: {where}: {result['views'][where]}")
    return result
