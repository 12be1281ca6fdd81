"""The ``pretrain`` stage: self-supervised pretraining (sslight/engine/trainer.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sslight.engine.trainer import pretrain
from sslight.stages.base import EpochHook


def pretrain_stage(
    cfg: Any, run_dir: Path, device: torch.device, on_epoch: EpochHook | None = None
) -> dict[str, Any]:
    """Pretrain ``cfg``'s method (the trainer places itself on its devices); ``on_epoch(summary)``
    after each epoch."""
    return pretrain(cfg, on_epoch=on_epoch)
