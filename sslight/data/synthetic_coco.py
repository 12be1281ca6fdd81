"""A small real detection / instance-segmentation set made offline: Fashion-MNIST on canvases.

Each canvas holds 1–4 Fashion-MNIST items (10 classes) resized to random sizes and pasted at
random, non-overlapping positions on a black background. An item's mask is exactly its nonzero
pixels after the resize and its box is the tight box of that mask, so boxes and masks are exact.
The set is written in COCO format (``annotations/instances_<split>.json`` with RLE masks and
``<split>/*.png``), splits ``train`` (items from Fashion-MNIST train) and ``val`` (from its test
split), once per (canvas size, image counts, seed) under
``<data cache>/fashion_mnist_coco/``. The same seed gives byte-identical annotation files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.nn import functional as F
from torchvision.io import write_png

from sslight.data.sources import build_source, default_data_root

OBJECTS_PER_IMAGE = (1, 4)
ITEM_SIDE = (1 / 8, 1 / 2.5)  # item side as a fraction of the canvas side
ASPECT = (0.75, 1.33)  # height / width of the resized item
PLACEMENT_TRIES = 50
SPLIT_SOURCES = {"train": "train", "val": "val"}  # canvas split -> Fashion-MNIST split


def synthetic_coco_dir(canvas_size: int, images: tuple[int, int], seed: int = 0) -> Path:
    """Where the set for these settings lives: ``<data cache>/fashion_mnist_coco/<variant>``."""
    variant = f"{canvas_size}px_{images[0]}+{images[1]}_seed{seed}"
    return default_data_root() / "fashion_mnist_coco" / variant


def ensure_synthetic_coco(canvas_size: int, images: tuple[int, int], seed: int = 0) -> Path:
    """The root of the set, generated on first use (atomically: concurrent callers are safe)."""
    root = synthetic_coco_dir(canvas_size, images, seed)
    if (root / "annotations").is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
    try:
        for (split, fmnist_split), count in zip(SPLIT_SOURCES.items(), images, strict=True):
            write_split(tmp, split, fmnist_split, count, canvas_size, seed)
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / "annotations").is_dir():  # not a concurrent writer: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def write_split(
    root: Path, split: str, fmnist_split: str, count: int, canvas_size: int, seed: int
) -> None:
    """Write ``count`` canvases to ``root/split/`` and their annotations to ``root/annotations``."""
    source = build_source("fashion_mnist", None, fmnist_split)
    rng = np.random.default_rng([seed, list(SPLIT_SOURCES).index(split)])
    (root / split).mkdir(parents=True)
    (root / "annotations").mkdir(exist_ok=True)
    coco: dict[str, Any] = {
        "info": {"description": "Fashion-MNIST items on canvases", "seed": seed, "split": split},
        "categories": [
            {"id": k + 1, "name": name, "supercategory": "fashion"}
            for k, name in enumerate(source.classes)
        ],
        "images": [],
        "annotations": [],
    }
    for image_id in range(1, count + 1):
        canvas, objects = compose_canvas(source, canvas_size, rng)
        file_name = f"{image_id:06d}.png"
        write_png(torch.from_numpy(canvas)[None], str(root / split / file_name))
        coco["images"].append(
            {"id": image_id, "file_name": file_name, "height": canvas_size, "width": canvas_size}
        )
        for label, mask in objects:
            coco["annotations"].append(
                annotation(len(coco["annotations"]) + 1, image_id, label + 1, mask)
            )
    text = json.dumps(coco, sort_keys=True, separators=(",", ":"))
    (root / "annotations" / f"instances_{split}.json").write_text(text)


def compose_canvas(
    source: Any, canvas_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One grayscale canvas and its objects as ``(class index, full-canvas bool mask)``."""
    canvas = np.zeros((canvas_size, canvas_size), dtype=np.uint8)
    taken: list[tuple[int, int, int, int]] = []  # pasted patches (x0, y0, x1, y1), exclusive
    objects = []
    for _ in range(int(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1))):
        index = int(rng.integers(len(source)))
        item = source.images[index]
        width = round(canvas_size * float(rng.uniform(*ITEM_SIDE)))
        height = min(canvas_size, max(4, round(width * float(rng.uniform(*ASPECT)))))
        patch = resize_item(item, height, width)
        for _ in range(PLACEMENT_TRIES):
            x0 = int(rng.integers(canvas_size - width + 1))
            y0 = int(rng.integers(canvas_size - height + 1))
            box = (x0, y0, x0 + width, y0 + height)
            if not any(_overlap(box, other) for other in taken):
                break
        else:
            continue  # no free place on this canvas
        if not patch.any():
            continue
        taken.append(box)
        canvas[y0 : y0 + height, x0 : x0 + width] = patch
        mask = np.zeros_like(canvas, dtype=bool)
        mask[y0 : y0 + height, x0 : x0 + width] = patch > 0
        objects.append((int(source.labels[index]), mask))
    return canvas, objects


def resize_item(item: torch.Tensor, height: int, width: int) -> np.ndarray:
    """A 28×28 uint8 item resized (bilinear, antialiased) to ``height × width`` uint8."""
    resized = F.interpolate(
        item[None, None].float(), size=(height, width), mode="bilinear", antialias=True
    )
    return resized[0, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def annotation(ann_id: int, image_id: int, category_id: int, mask: np.ndarray) -> dict[str, Any]:
    """A COCO annotation: RLE mask, its pixel count as area, the tight box ``[x, y, w, h]``."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    x0, y0 = int(cols[0]), int(rows[0])
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode()},
        "area": int(mask.sum()),
        "bbox": [x0, y0, int(cols[-1]) - x0 + 1, int(rows[-1]) - y0 + 1],
        "iscrowd": 0,
    }


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
