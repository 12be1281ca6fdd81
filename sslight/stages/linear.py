"""The ``linear`` stage: a linear probe on the frozen evaluated backbone, and its floors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sslight.evaluation.floors import evaluation_floors, linear_floor_top1
from sslight.evaluation.linear import linear_eval
from sslight.weights.eval_backbone import load_eval_backbone


def linear_stage(cfg: Any, run_dir: Path, device: torch.device) -> dict[str, Any]:
    """``linear_top1``/``_top5`` (best and last epoch) plus the floors' scores."""
    result = linear_eval(load_eval_backbone(cfg, run_dir, device), cfg, run_dir, device)
    if cfg.eval.floors:
        settings = cfg.eval.linear.model_dump()
        floors = evaluation_floors(
            cfg, "linear", settings, lambda backbone: linear_floor_top1(backbone, cfg, device)
        )
        result.update(floors)
    return result
