"""The backbone a run's evaluation stages and its export start from.

That is the network the method evaluates (DINO: the EMA teacher, Caron et al. 2021, Sec. 3.1;
SwAV: the network; MoCo-v2: the query encoder, He et al. 2020, Sec. 3.3), with the weights of
the run's finished pretraining, or those of ``init.weights`` when the config sets it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslight.engine.checkpoint import load_checkpoint
from sslight.engine.rundir import RunDir
from sslight.weights.init_weights import eval_backbone_from_checkpoint, init_backbone


def load_eval_backbone(cfg: Any, run_dir: Path, device: torch.device) -> nn.Module:
    """The backbone ``cfg``'s method evaluates, frozen, in eval mode, on ``device``: from the
    pretraining checkpoint in ``run_dir``, or from ``init.weights`` when it is set (an export, a
    run or a seed checkpoint: sslight/weights/init_weights.py)."""
    if cfg.init.weights:
        return init_backbone(cfg, device)
    checkpoints = RunDir(run_dir).checkpoints
    state = load_checkpoint(checkpoints)
    if state is None:
        raise FileNotFoundError(f"{checkpoints}: no pretraining checkpoint")
    backbone = eval_backbone_from_checkpoint(cfg, state)
    backbone.requires_grad_(False)
    return backbone.eval().to(device)
