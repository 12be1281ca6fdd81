"""COCO-format detection data for any root: ``<root>/annotations/instances_<split>.json`` plus
the images in ``<root>/<split>/``.

Items are ``(image, target)`` as torchvision's detection models take them: a float ``[3, H, W]``
image in [0, 1] and ``{"boxes": [N, 4] xyxy, "labels": [N] in 1..K, "masks": [N, H, W] uint8,
"image_id": int}``. Category ids map to contiguous labels (sorted ids → 1..K; 0 is background).
Training items skip crowd and empty annotations, drop images left without any (as Detectron2
does) and take a horizontal-flip flag from the batch sampler, so batches depend only on the seed.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset, Sampler
from torchvision.io import ImageReadMode, decode_image, read_file

from sslight.data.sources import DataRootError
from sslight.inputs import COCO_LAYOUT

log = logging.getLogger(__name__)


def load_coco(annotation_file: Path) -> COCO:
    """pycocotools' index of ``annotation_file``, its progress chatter sent to the debug log."""
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):
        coco = COCO(str(annotation_file))
    log.debug("%s", chatter.getvalue().strip())
    return coco


class CocoDetection(Dataset):
    """One split of a COCO-format root; ``masks`` adds instance masks to the targets."""

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        masks: bool,
        train: bool,
        max_images: int | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.image_dir = self.root / split
        self.annotation_file = self.root / "annotations" / f"instances_{split}.json"
        for path in (self.annotation_file, self.image_dir):
            if not path.exists():
                raise DataRootError(
                    f"COCO split {split!r}: {path} does not exist; expected layout {COCO_LAYOUT} "
                    f"(set eval.detection.data_root=ROOT, or leave it unset for the synthetic set)"
                )
        self.coco = load_coco(self.annotation_file)
        self.masks, self.train = masks, train
        self.category_ids = sorted(self.coco.getCatIds())
        if not self.category_ids:
            raise DataRootError(f"{self.annotation_file}: no categories")
        self.label_of = {cid: k + 1 for k, cid in enumerate(self.category_ids)}
        ids = sorted(self.coco.getImgIds())
        if train:
            ids = [i for i in ids if self._annotations(i)]
        self.image_ids = ids[:max_images] if max_images else ids
        if not self.image_ids:
            raise DataRootError(f"{self.annotation_file}: no image with a usable annotation")

    @property
    def num_classes(self) -> int:
        """Object categories plus background."""
        return len(self.category_ids) + 1

    def __len__(self) -> int:
        return len(self.image_ids)

    def _annotations(self, image_id: int) -> list[dict[str, Any]]:
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id))
        if not self.train:
            return anns
        return [a for a in anns if not a.get("iscrowd", 0) and min(a["bbox"][2:]) >= 1]

    def __getitem__(self, item: int | tuple[int, bool]) -> tuple[torch.Tensor, dict[str, Any]]:
        index, flip = item if isinstance(item, tuple) else (item, False)
        image_id = self.image_ids[index]
        info = self.coco.loadImgs(image_id)[0]
        data = read_file(str(self.image_dir / info["file_name"]))
        image = decode_image(data, mode=ImageReadMode.RGB).float().div_(255)
        anns = self._annotations(image_id)
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        target: dict[str, Any] = {
            "boxes": boxes,
            "labels": torch.tensor([self.label_of[a["category_id"]] for a in anns]).long(),
            "image_id": image_id,
        }
        if self.masks:
            height, width = image.shape[-2:]
            masks = [self.coco.annToMask(a) for a in anns]
            target["masks"] = torch.from_numpy(
                np.stack(masks) if masks else np.zeros((0, height, width), dtype=np.uint8)
            )
        if flip:
            image = image.flip(-1)
            width = image.shape[-1]
            target["boxes"] = torch.stack(
                [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1
            )
            if self.masks:
                target["masks"] = target["masks"].flip(-1)
        return image, target


class TrainBatches(Sampler[list[tuple[int, bool]]]):
    """Batches for iterations ``start .. iterations - 1``: epoch ``e`` is a permutation seeded
    by ``(seed, e)`` cut into full batches, each item with a seeded horizontal-flip flag."""

    def __init__(self, size: int, batch_size: int, iterations: int, seed: int, start: int = 0):
        if size < batch_size:
            raise ValueError(f"{size} training images for a batch of {batch_size}")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.iterations, self.start = iterations, start
        self.per_epoch = size // batch_size

    def __len__(self) -> int:
        return max(0, self.iterations - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        epoch, order, flips = -1, torch.empty(0), torch.empty(0)
        for iteration in range(self.start, self.iterations):
            if iteration // self.per_epoch != epoch:
                epoch = iteration // self.per_epoch
                generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
                order = torch.randperm(self.size, generator=generator)
                flips = torch.rand(self.size, generator=generator) < 0.5
            first = (iteration % self.per_epoch) * self.batch_size
            chosen = range(first, first + self.batch_size)
            yield [(int(order[i]), bool(flips[i])) for i in chosen]


def collate_detection(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[list, list]:
    """Images and targets as lists (images differ in size; the model batches them)."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
