"""The ``detection`` and ``segmentation`` stages: COCO transfer, sslight/evaluation/detection.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sslight.evaluation.detection import transfer
from sslight.weights.eval_backbone import load_eval_backbone


def detection_stage(cfg: Any, run_dir: Path, device: torch.device) -> dict[str, float]:
    """Faster R-CNN + FPN from the pretrained backbone: box AP, AP50, AP75."""
    backbone = load_eval_backbone(cfg, run_dir, device)
    return transfer(backbone, cfg, run_dir, device, masks=False)


def segmentation_stage(cfg: Any, run_dir: Path, device: torch.device) -> dict[str, float]:
    """Mask R-CNN + FPN from the pretrained backbone: box AP and mask AP, AP50, AP75."""
    backbone = load_eval_backbone(cfg, run_dir, device)
    return transfer(backbone, cfg, run_dir, device, masks=True)
