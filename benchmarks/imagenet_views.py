"""Multi-crop views of ImageNet-sized JPEGs per CPU core: our loader path against lightly's.

A seeded folder of JPEGs in the ``image_folder`` layout (ImageNet's sizes, quality 90, smooth
gradients, shapes and grain) is generated once and cached. Each side makes every view of every
image on one thread, as one loader worker does: ours decodes through the ``image_folder`` source
and makes a batch's views at once (``MultiCropCollate`` over ``BatchedMultiCrop``), handing them
over as uint8 for the training device to normalise (``ours_cpu_normalised`` adds that
normalisation on the same core, as when training on the CPU); lightly opens each file as a PIL
image (its datasets' loader) and applies ``DINOTransform`` or ``SwaVTransform``. Recipes: DINO
with SSLight's views (2 × 224 px, scale 0.3–1, + 6 × 128 px, 0.05–0.3; Tan et al. 2023), DINO's
own (2 × 224, 0.14–1, + 6 × 96, 0.05–0.14; Caron et al. 2021) and SwAV's augmentations with
SSLight's views. The peak RSS of one such worker is measured in a fresh process per side.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import median, peak_rss_kib, versus_lightly
from sslight.data.allocator import reuse_freed_memory

TARGET = 3.0  # DINO with SSLight's views: ours ≥ 3× lightly's images/s per core
BATCH = 64  # images per loader batch
COUNT = 128  # images in the full run
# (width, height): ImageNet's commonest sizes, 500 × 375 the most frequent
SIZES = ((500, 375), (500, 375), (375, 500), (500, 333), (500, 500), (333, 500), (640, 480))
QUALITY = 90
CLASSES = 4
VERSION = 1  # bump when the generated content changes


@dataclass(frozen=True)
class Recipe:
    """An augmentation recipe and its views: 2 globals and 6 locals."""

    method: str  # "dino" or "swav"
    global_size: int
    global_scale: tuple[float, float]
    local_size: int
    local_scale: tuple[float, float]
    target: float | None = None


RECIPES = {
    "dino_sslight": Recipe("dino", 224, (0.3, 1.0), 128, (0.05, 0.3), TARGET),
    "dino_baseline": Recipe("dino", 224, (0.14, 1.0), 96, (0.05, 0.14)),
    "swav_sslight": Recipe("swav", 224, (0.3, 1.0), 128, (0.05, 0.3)),
}


def cache_dir() -> Path:
    """``$SSLIGHT_BENCH_CACHE`` or ``~/.cache/sslight-bench``."""
    return Path(os.environ.get("SSLIGHT_BENCH_CACHE") or "~/.cache/sslight-bench").expanduser()


def _picture(width: int, height: int, gen: torch.Generator) -> torch.Tensor:
    """uint8 ``[H, W, 3]``: a smooth colour field, finer texture, a few shapes and grain."""
    from torchvision.transforms.v2 import functional as F

    def field(h: int, w: int, amplitude: float) -> torch.Tensor:
        coarse = torch.rand(3, h, w, generator=gen) * amplitude
        return F.resize(coarse, [height, width], antialias=True)

    x = field(4, 5, 255.0) + field(40, 50, 60.0) - 30.0
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    for _ in range(int(torch.randint(3, 8, (), generator=gen))):
        cy, cx, ry, rx = (
            torch.rand(4, generator=gen) * torch.tensor([height, width, 80, 80])
        ).tolist()
        inside = ((yy - cy) / (ry + 10)) ** 2 + ((xx - cx) / (rx + 10)) ** 2 <= 1
        x = torch.where(inside, torch.rand(3, 1, 1, generator=gen) * 255, x)
    x = x + 6.0 * torch.randn(3, height, width, generator=gen)
    return x.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()


def jpeg_folder(count: int) -> Path:
    """The ``image_folder`` root of ``count`` seeded JPEGs (``train/class<k>/<i>.jpg``), made
    on first use under ``cache_dir()``."""
    from PIL import Image

    root = cache_dir() / f"imagenet_views-v{VERSION}-{count}"
    done = root / ".complete"
    if done.is_file():
        return root
    gen = torch.Generator().manual_seed(VERSION)
    for i in range(count):
        width, height = SIZES[i % len(SIZES)]
        folder = root / "train" / f"class{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(_picture(width, height, gen).numpy())
        image.save(folder / f"{i:05d}.jpg", quality=QUALITY)
    done.touch()
    return root


def our_collate(recipe: Recipe) -> Any:
    from sslight.data import CropSpec, build_multicrop
    from sslight.data.loader import MultiCropCollate

    transform = build_multicrop(
        recipe.method,
        CropSpec(2, recipe.global_size, recipe.global_scale),
        CropSpec(6, recipe.local_size, recipe.local_scale),
    )
    return MultiCropCollate(transform.batched)


def lightly_transform(recipe: Recipe) -> Any:
    from lightly.transforms import DINOTransform, SwaVTransform

    if recipe.method == "dino":
        return DINOTransform(
            global_crop_size=recipe.global_size,
            global_crop_scale=recipe.global_scale,
            local_crop_size=recipe.local_size,
            local_crop_scale=recipe.local_scale,
            n_local_views=6,
        )
    return SwaVTransform(
        crop_sizes=(recipe.global_size, recipe.local_size),
        crop_counts=(2, 6),
        crop_min_scales=(recipe.global_scale[0], recipe.local_scale[0]),
        crop_max_scales=(recipe.global_scale[1], recipe.local_scale[1]),
    )


def ours_per_second(
    root: Path, recipe: Recipe, batch: int, collate: Any = None, *, normalise: bool = False
) -> float:
    """Images/s of our loader path: ``image_folder`` decode, then a batch's uint8 views at once
    (with ``normalise``, also made the network's float input on this core)."""
    from sslight.data import build_source, views_of_batch
    from sslight.data.loader import SeededImageDataset

    dataset = SeededImageDataset(build_source("image_folder", str(root), "train"))
    collate = collate or our_collate(recipe)
    start = time.perf_counter()
    for first in range(0, len(dataset), batch):
        keys = range(first, min(first + batch, len(dataset)))
        views, _ = collate([dataset[(i, 1000 + i)] for i in keys])
        if normalise:
            views_of_batch(views, None, torch.device("cpu"))
    return len(dataset) / (time.perf_counter() - start)


def lightly_per_second(root: Path, recipe: Recipe, transform: Any = None) -> float:
    """Images/s of lightly's path: each file opened as an RGB PIL image, then transformed."""
    from PIL import Image

    files = sorted(root.glob("train/*/*.jpg"))
    transform = transform or lightly_transform(recipe)
    start = time.perf_counter()
    for path in files:
        with Image.open(path) as image:
            transform(image.convert("RGB"))
    return len(files) / (time.perf_counter() - start)


def peak_rss_mib(side: str, root: Path, recipe: str, batch: int) -> dict[str, float]:
    """A fresh single-threaded process making every view of ``root`` once: its peak RSS and
    what the views added to the RSS of its imports (MiB)."""
    command = [sys.executable, "-m", "benchmarks.imagenet_views", side, str(root), recipe]
    done = subprocess.run(
        [*command, "--batch", str(batch)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    before, peak = (float(word) / 1024 for word in done.stdout.split()[-2:])
    return {"peak": round(peak, 1), "views": round(peak - before, 1)}


def compare(name: str, root: Path, *, quick: bool, batch: int) -> dict[str, Any]:
    recipe, rounds = RECIPES[name], 1 if quick else 5
    collate, theirs = our_collate(recipe), lightly_transform(recipe)
    entry = versus_lightly(
        lambda: ours_per_second(root, recipe, batch, collate),
        lambda: lightly_per_second(root, recipe, theirs),
        rounds,
        recipe.target,  # type: ignore[arg-type]  # None: a comparison without a target
        unit="images/s per core",
        batch=batch,
    )
    normalised = [
        ours_per_second(root, recipe, batch, collate, normalise=True) for _ in range(rounds)
    ]
    entry["ours_cpu_normalised"] = round(median(normalised), 2)
    entry["ratio_cpu_normalised"] = round(median(normalised) / entry["lightly"], 3)
    rss = {side: peak_rss_mib(side, root, name, batch) for side in ("ours", "lightly")}
    entry["peak_rss_mib"] = {side: rss[side]["peak"] for side in rss}
    entry["views_rss_mib"] = {side: rss[side]["views"] for side in rss}
    return entry


def run(quick: bool = False, threads: int | None = None) -> dict[str, Any]:
    """One worker's view: a single thread, whatever ``threads`` the other families use, and
    the allocator settings our loader workers start with, for both sides."""
    del threads
    reuse_freed_memory()
    count, batch = (8, 4) if quick else (COUNT, BATCH)
    root = jpeg_folder(count)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        names = ["dino_sslight"] if quick else list(RECIPES)
        result: dict[str, Any] = {"images": count, "folder": str(root)}
        for name in names:
            result[f"imagenet_views_vs_lightly/{name}"] = compare(
                name, root, quick=quick, batch=batch
            )
        return result
    finally:
        torch.set_num_threads(previous)


def _worker(argv: list[str]) -> None:
    """``python -m benchmarks.imagenet_views {ours,lightly} ROOT RECIPE``: one pass, then the
    process's RSS before it and its peak RSS, in KiB."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.imagenet_views")
    parser.add_argument("side", choices=("ours", "lightly"))
    parser.add_argument("root", type=Path)
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    reuse_freed_memory()
    recipe = RECIPES[args.recipe]
    transform = our_collate(recipe) if args.side == "ours" else lightly_transform(recipe)
    before = peak_rss_kib("VmRSS")
    if args.side == "ours":
        ours_per_second(args.root, recipe, args.batch, transform)
    else:
        lightly_per_second(args.root, recipe, transform)
    print(before, peak_rss_kib())


if __name__ == "__main__":
    _worker(sys.argv[1:])
