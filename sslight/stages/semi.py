"""The ``semi_<p>`` stages: fine-tune the evaluated backbone on ``p`` % of the labels."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from sslight.evaluation.semi import semi_supervised
from sslight.stages.base import StageFn
from sslight.weights.eval_backbone import load_eval_backbone, load_eval_head

log = logging.getLogger(__name__)


def semi_stage(fraction: float, epochs: int) -> StageFn:
    """The stage of label fraction ``fraction`` fine-tuned for ``epochs`` epochs."""

    def stage(cfg: Any, run_dir: Path, device: torch.device) -> dict[str, Any]:
        backbone = load_eval_backbone(cfg, run_dir, device)
        head = None
        if cfg.eval.semi.head == "mlp":
            head, source = load_eval_head(cfg, run_dir)
            log.info("semi-supervised MLP head from: %s", source if head else f"nothing ({source})")
        return semi_supervised(backbone, cfg, fraction, epochs, run_dir, device, head)

    return stage
