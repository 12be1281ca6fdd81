"""Device, precision, memory format and seeding: the only place that knows about hardware."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sslight.config.schema import TrainConfig
from sslight.models.backbones import backbone_spec


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    compile: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @classmethod
    def from_config(cls, train: TrainConfig, backbone: str, local_rank: int = 0) -> Runtime:
        use_cuda = wants_cuda(train)
        device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
        bf16 = train.precision == "bf16" or (train.precision == "auto" and use_cuda)
        if train.channels_last == "auto":  # what the backbone's spec measured fastest
            channels_last = backbone_spec(backbone).channels_last
        else:
            channels_last = train.channels_last == "on"
        return cls(device, torch.bfloat16 if bf16 else None, channels_last, train.compile)


def compile_backbones(model: nn.Module) -> None:
    """``torch.compile`` every backbone inside ``model`` in place (``nn.Module.compile`` keeps the
    state-dict keys, so checkpoints stay loadable without it). Heads and losses stay eager: they
    log Python floats every step, which would break the graph."""
    for module in model.modules():
        if getattr(module, "family", None) in ("cnn", "vit"):  # set by build_backbone
            module.compile()


def wants_cuda(train: TrainConfig) -> bool:
    """CUDA when asked for or, with ``device: auto``, when one is visible."""
    if train.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is visible")
    return train.device == "cuda" or (train.device == "auto" and torch.cuda.is_available())


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
