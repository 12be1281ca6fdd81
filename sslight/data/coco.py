"""COCO-format detection data for any root: ``<root>/annotations/instances_<split>.json`` plus
the images in ``<root>/<split>/``.

Items are ``(image, target)`` as torchvision's detection models take them: a float ``[3, H, W]``
image in [0, 1] and ``{"boxes": [N, 4] xyxy, "labels": [N] in 1..K, "masks": [N, H, W] uint8,
"image_id": int}``. Category ids map to contiguous labels (sorted ids → 1..K; 0 is background).
Training items skip crowd and empty annotations, drop images left without any (as Detectron2
does) and take a horizontal-flip flag from the batch sampler, so batches depend only on the seed;
the sampler groups them by aspect ratio and shares each global batch out over the ranks.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
from collections import defaultdict
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

    def aspect_groups(self) -> list[int]:
        """Per image, Detectron2's aspect-ratio group: 0 landscape (wider than high), 1 not."""
        return [int(info["width"] <= info["height"]) for info in self.coco.loadImgs(self.image_ids)]

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
    """This rank's share of the global batches of iterations ``start .. iterations - 1``.

    The images stream epoch after epoch, epoch ``e`` a permutation seeded by ``(seed, e)``, each
    item with a seeded horizontal-flip flag. Batches are grouped by aspect ratio as Detectron2 does
    by default (its ``AspectRatioGroupedDataset``; torchvision's ``GroupedBatchSampler``): each
    item joins the buffer of its group (``groups[i]``, one group when None) and a buffer that
    reaches ``batch_size`` items is the next batch, so a batch needs little padding; what an epoch
    leaves in the buffers carries into the next. Rank ``r`` of ``world_size`` takes items
    ``[r·b, (r+1)·b)`` of each global batch of ``batch_size = b·world_size``.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        iterations: int,
        seed: int,
        start: int = 0,
        *,
        groups: Sequence[int] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if size < batch_size:
            raise ValueError(f"{size} training images for a batch of {batch_size}")
        if batch_size % world_size:
            raise ValueError(
                f"eval.detection.batch_size {batch_size} is not divisible by the {world_size} "
                f"processes of the job; use a multiple of {world_size}"
            )
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.iterations, self.start = iterations, start
        self.groups = [0] * size if groups is None else list(groups)
        self.share = batch_size // world_size
        self.first = rank * self.share

    def __len__(self) -> int:
        return max(0, self.iterations - self.start)

    def global_batches(self) -> Iterator[list[tuple[int, bool]]]:
        """The endless stream of global batches, from iteration 0."""
        buffers: dict[int, list[tuple[int, bool]]] = defaultdict(list)
        for epoch in itertools.count():
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
            flips = (torch.rand(self.size, generator=generator) < 0.5).tolist()
            for index in order:
                buffer = buffers[self.groups[index]]
                buffer.append((index, flips[index]))
                if len(buffer) == self.batch_size:
                    yield buffer.copy()
                    buffer.clear()

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        batches = itertools.islice(self.global_batches(), self.start, self.iterations)
        for batch in batches:
            yield batch[self.first : self.first + self.share]


def collate_detection(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[list, list]:
    """Images and targets as lists (images differ in size; the model batches them)."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
