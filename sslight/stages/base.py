"""What a stage is: ``stage(cfg, run_dir, device) -> metrics`` merged into ``result.json``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

StageFn = Callable[[Any, Path, "torch.device"], dict[str, Any]]
EpochHook = Callable[[dict[str, Any]], None]
