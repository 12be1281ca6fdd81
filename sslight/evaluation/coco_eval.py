"""COCO evaluation of a torchvision detector with pycocotools (COCOeval, ``bbox`` and ``segm``).

Predictions are turned into COCO results (``[x, y, w, h]`` boxes, original category ids, masks
binarised at 0.5 and RLE-encoded) and scored against the split's annotation file; AP, AP50 and
AP75 are returned in percent. A model that detects nothing scores 0.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.utils.data import DataLoader, Subset

from sslight.data.coco import CocoDetection, collate_detection

log = logging.getLogger(__name__)

SUMMARY = {"ap": 0, "ap50": 1, "ap75": 2}  # indices into COCOeval.stats


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: CocoDetection,
    device: torch.device,
    batch_size: int,
    workers: int,
    images: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """COCO result entries for every image of ``dataset``, or for those at positions ``images``
    (model put in eval mode)."""
    model.eval()
    chosen = dataset if images is None else Subset(dataset, list(images))
    loader = DataLoader(
        chosen, batch_size=batch_size, num_workers=workers, collate_fn=collate_detection
    )
    category_of = dataset.category_ids
    results: list[dict[str, Any]] = []
    for images, targets in loader:
        outputs = model([image.to(device) for image in images])
        for output, target in zip(outputs, targets, strict=True):
            boxes = output["boxes"].cpu()
            boxes[:, 2:] -= boxes[:, :2]
            masks = output.get("masks") if len(boxes) else None
            if masks is not None:
                binary = (masks[:, 0] > 0.5).cpu().numpy().astype(np.uint8)
                rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
            for k in range(len(boxes)):
                entry = {
                    "image_id": target["image_id"],
                    "category_id": category_of[int(output["labels"][k]) - 1],
                    "bbox": [round(float(v), 2) for v in boxes[k]],
                    "score": float(output["scores"][k]),
                }
                if masks is not None:
                    entry["segmentation"] = {
                        "size": rles[k]["size"],
                        "counts": rles[k]["counts"].decode(),
                    }
                results.append(entry)
    return results


def coco_ap(dataset: CocoDetection, results: list[dict[str, Any]], kind: str) -> dict[str, float]:
    """``{"ap", "ap50", "ap75"}`` in percent for ``kind`` in {"bbox", "segm"} on the images of
    ``dataset``."""
    if not results:
        log.warning("no detections on %d images: %s AP is 0", len(dataset), kind)
        return dict.fromkeys(SUMMARY, 0.0)
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):
        detections = dataset.coco.loadRes(results)
        evaluator = COCOeval(dataset.coco, detections, kind)
        evaluator.params.imgIds = list(dataset.image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    log.info("COCO %s evaluation:\n%s", kind, chatter.getvalue().strip())
    return {
        name: round(100 * max(0.0, float(evaluator.stats[i])), 3) for name, i in SUMMARY.items()
    }
