"""Optimisers with the seed repo's three parameter groups (docs/architecture.md).

- 1-D tensors (biases, norm weights): no weight decay, excluded from LARS adaptation;
- depthwise conv weights (4-D, ``shape[1] == 1``): no weight decay but LARS-adapted;
- everything else: full decay and LARS adaptation.
Each group carries ``wd_scale`` so the per-iteration weight-decay schedule can be applied.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from timm.optim import Lars
from torch import nn


def parameter_groups(modules: Iterable[nn.Module]) -> list[dict]:
    """Split trainable parameters into the regularised / 1-D / depthwise groups."""
    regular, flat, depthwise = [], [], []
    seen: set[int] = set()
    for module in modules:
        for param in module.parameters():
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if param.ndim <= 1:
                flat.append(param)
            elif param.ndim == 4 and param.shape[1] == 1:
                depthwise.append(param)
            else:
                regular.append(param)
    groups = [
        {"params": regular, "wd_scale": 1.0, "always_adapt": True, "name": "regular"},
        {"params": flat, "wd_scale": 0.0, "always_adapt": False, "name": "no_decay"},
        {"params": depthwise, "wd_scale": 0.0, "always_adapt": True, "name": "depthwise"},
    ]
    return [group for group in groups if group["params"]]


def build_optimizer(
    name: str, modules: Iterable[nn.Module], momentum: float = 0.9
) -> torch.optim.Optimizer:
    """``lars`` (timm, eta 0.001), ``adamw`` or ``sgd``; lr and decay are set every step."""
    groups = parameter_groups(modules)
    if name == "lars":
        return Lars(groups, lr=0.0, momentum=momentum, weight_decay=0.0, trust_coeff=0.001)
    for group in groups:
        group.pop("always_adapt")
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=0.0, momentum=momentum, weight_decay=0.0)
    raise ValueError(f"unknown optimizer {name!r}; choose one of: lars, adamw, sgd")


def set_lr_and_weight_decay(
    optimizer: torch.optim.Optimizer, lr: float, weight_decay: float
) -> None:
    """Apply this iteration's scheduled values to every group."""
    for group in optimizer.param_groups:
        group["lr"] = float(lr)
        group["weight_decay"] = float(weight_decay) * group["wd_scale"]
