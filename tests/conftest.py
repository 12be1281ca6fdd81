"""Shared fixtures: tiny run configs on the synthetic source (CPU, seconds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from sslight.config import resolve
from sslight.config.load import deep_merge


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


def tiny_run(output_dir: Any, **overrides: Any) -> Any:
    """A DINO run on 32 px synthetic images, small head, a few steps; ``overrides`` nest."""
    raw = {
        "method": "dino",
        "backbone": "resnet18",
        "views": {"policy": "sslight", "local_crops": {"number": 2}},
        "data": {"dataset": "synthetic", "image_size": 32, "num_workers": 0},
        "train": {
            "epochs": 1,
            "batch_size": 8,
            "max_steps_per_epoch": 2,
            "warmup_epochs": 0,
            "log_every_steps": 1,
            "progress": False,
        },
        "dino": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16},
        "output_dir": str(output_dir),
    }
    return resolve(deep_merge(raw, overrides), source="test")


@pytest.fixture
def make_run() -> Callable[..., Any]:
    return tiny_run
