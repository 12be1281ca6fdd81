"""The head that semi-supervised fine-tuning trains on top of the backbone.

``mlp`` is the seed's (``classification/engines/cls_trainer.py``):
``fc1 Linear(D, 2048) - bn1 - GELU - fc2 Linear(2048, 2048) - bn2 - GELU - fc3 Linear(2048, C)``,
whose first two layers start from the pretrained projection head where the method has a fitting
one: the seed loads ``head.mlp.0/.1/.3/.4`` of its DINO student (``load_pretrained_models.py``,
``use_head=True``), i.e. the head's first two Linear layers and the BatchNorm after each. A head
without batch norm (DINO's ViT recipe) gives its two Linear layers; ``bn1``/``bn2`` start fresh.
``linear`` is one ``Linear(D, C)`` initialised as DINO's linear classifier.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sslight.evaluation.classifier import linear_head

HIDDEN = 2048  # the seed's width; a pretrained head's own width when it initialises the MLP


def mlp_head(in_dim: int, num_classes: int, seed: int, hidden: int = HIDDEN) -> nn.Sequential:
    """The seed's 3-layer head, PyTorch's default init drawn from ``seed`` (equal on every rank)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = OrderedDict(
            fc1=nn.Linear(in_dim, hidden),
            bn1=nn.BatchNorm1d(hidden),
            act1=nn.GELU(),
            fc2=nn.Linear(hidden, hidden),
            bn2=nn.BatchNorm1d(hidden),
            act2=nn.GELU(),
            fc3=nn.Linear(hidden, num_classes),
        )
    return nn.Sequential(layers)


def _layers(state: Mapping[str, torch.Tensor]) -> list[tuple[str, str, dict[str, torch.Tensor]]]:
    """The layers of a projection head's ``mlp`` in order: ``(name, kind, tensors)``, kind
    ``linear`` or ``bn``; parameter-free layers (GELU) do not appear."""
    grouped: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "mlp" and parts[1].isdigit():
            grouped.setdefault(int(parts[1]), {})[parts[2]] = value
    layers = []
    for index in sorted(grouped):
        tensors = grouped[index]
        kind = "bn" if "running_mean" in tensors else "linear"
        layers.append((f"mlp.{index}", kind, tensors))
    return layers


def pretrained_layers(
    state: Mapping[str, torch.Tensor],
) -> dict[str, tuple[str, dict[str, torch.Tensor]]]:
    """``fc1``/``bn1``/``fc2``/``bn2`` of the MLP head → the pretrained head layer that initialises
    it: the first two Linear layers of ``state`` (a projection head's state dict) and the
    BatchNorm right after each."""
    chosen: dict[str, tuple[str, dict[str, torch.Tensor]]] = {}
    linears = 0
    previous = ""
    for name, kind, tensors in _layers(state):
        if kind == "linear":
            if linears == 2:
                break
            linears += 1
            previous = f"fc{linears}"
            chosen[previous] = (name, tensors)
        elif previous.startswith("fc"):
            chosen[f"bn{linears}"] = (name, tensors)
            previous = ""
    return chosen if linears == 2 else {}


def semi_head(
    kind: str,
    in_dim: int,
    num_classes: int,
    seed: int,
    pretrained: Mapping[str, torch.Tensor] | None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The ``eval.semi.head`` to fine-tune, and a record of how it was initialised:
    ``{"head", "initialised_from": {our layer: pretrained layer}}``."""
    if kind == "linear":
        return linear_head(in_dim, num_classes, seed), {"head": "linear", "initialised_from": {}}
    layers = pretrained_layers(pretrained) if pretrained else {}
    hidden = int(layers["fc1"][1]["weight"].shape[0]) if layers else HIDDEN
    head = mlp_head(in_dim, num_classes, seed, hidden)
    for ours, (theirs, tensors) in layers.items():
        module = getattr(head, ours)
        own = module.state_dict()
        if set(tensors) != set(own) or any(tensors[k].shape != own[k].shape for k in own):
            shapes = {k: list(v.shape) for k, v in tensors.items()}
            raise ValueError(
                f"eval.semi.head: the pretrained head's {theirs} ({shapes}) does not fit the "
                f"MLP head's {ours} ({ {k: list(v.shape) for k, v in own.items()} }); use "
                "eval.semi.head: linear"
            )
        module.load_state_dict(dict(tensors))
    record = {"head": "mlp", "initialised_from": {k: v[0] for k, v in layers.items()}}
    return head, record
