"""The backbone a run's evaluation stages and its export start from.

That is the backbone of the network ``eval.network`` names: by default the student, as the seed
evaluates (DINO's student, MoCo-v2's query encoder, SwAV's only network), or the teacher (DINO's
EMA teacher, which Caron et al. 2021, Sec. 3.1, evaluate; MoCo's key encoder), with the weights
of the run's finished pretraining, or those of ``init.weights`` when the config sets it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslight.engine.checkpoint import load_checkpoint
from sslight.engine.rundir import RunDir
from sslight.weights.init_weights import init_backbone, init_head, network_from_checkpoint


def load_eval_backbone(cfg: Any, run_dir: Path, device: torch.device) -> nn.Module:
    """The backbone of ``cfg``'s ``eval.network``, frozen, in eval mode, on ``device``: from the
    pretraining checkpoint in ``run_dir``, or from ``init.weights`` when it is set (an export, a
    run or a seed checkpoint: sslight/weights/init_weights.py)."""
    if cfg.init.weights:
        return init_backbone(cfg, device)
    checkpoints = RunDir(run_dir).checkpoints
    state = load_checkpoint(checkpoints)
    if state is None:
        raise FileNotFoundError(f"{checkpoints}: no pretraining checkpoint")
    backbone = network_from_checkpoint(cfg, state, cfg.eval.network).backbone
    backbone.requires_grad_(False)
    return backbone.eval().to(device)


def load_eval_head(cfg: Any, run_dir: Path) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The projection head of ``cfg``'s ``eval.network`` as a state dict (``mlp.*`` keys), for
    the semi-supervised MLP head to start from, and where it came from; None where the method
    does not initialise from it (``MethodSpec.semi_head_from_pretrained``) or the weights hold
    no head (an export)."""
    from sslight.methods import METHODS

    if not METHODS.get(cfg.method).semi_head_from_pretrained:
        return None, f"{cfg.method}: the seed starts the semi-supervised head afresh"
    if cfg.init.weights:
        return init_head(cfg)
    state = load_checkpoint(RunDir(run_dir).checkpoints)
    if state is None:
        raise FileNotFoundError(f"{RunDir(run_dir).checkpoints}: no pretraining checkpoint")
    head = network_from_checkpoint(cfg, state, cfg.eval.network).head
    return _mlp_state(head.state_dict()), f"{cfg.eval.network} head of the pretraining"


def _mlp_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items() if k.startswith("mlp.")}
