"""Floors: what an evaluation scores without any pretraining, on the same data and protocol.

A pretrained backbone has learned something only if it beats

- ``random``: the same architecture, randomly initialised (seeded by ``cfg.seed``), evaluated like
  the pretrained one: frozen, in eval mode, with its BatchNorm running statistics at their
  initial values (mean 0, variance 1). Calibrating those statistics on data would be a different
  protocol (and, for MobileNetV2 at 32 px, a much lower floor: ~10 % k-NN instead of ~57 % on
  Fashion-MNIST, because a deep random network whose layers are renormalised mixes its inputs).
- ``pixels``: the normalised image itself, flattened (3·H·W features).

Each floor is computed once per dataset, data root, image size, subsets, seed, backbone (random
only) and evaluation settings, and cached as JSON in ``$SSLIGHT_CACHE/floors`` (default
``~/.cache/sslight/floors``), written through a temporary file and an atomic rename so concurrent
runs never read a torn file. ``eval.floors: false`` turns them off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslight.engine.distributed import broadcast_object, current_env
from sslight.models import build_backbone

log = logging.getLogger(__name__)

FLOOR_KINDS = ("random", "pixels")
CACHE_VERSION = 1

Evaluate = Callable[[nn.Module], float]


class PixelBackbone(nn.Module):
    """Raw pixels as features: the normalised ``[B, 3, H, W]`` image, flattened."""

    family = "cnn"
    name = "pixels"

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.embed_dim = 3 * image_size * image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)


def floor_backbone(kind: str, cfg: Any) -> nn.Module:
    """The frozen, eval-mode stand-in for a pretrained backbone that floor ``kind`` scores."""
    if kind == "pixels":
        return PixelBackbone(cfg.data.image_size).eval()
    if kind != "random":
        raise ValueError(f"unknown floor {kind!r}; choose one of: {', '.join(FLOOR_KINDS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        backbone = build_backbone(cfg.backbone)
    return backbone.requires_grad_(False).eval()


def cache_dir() -> Path:
    """``$SSLIGHT_CACHE/floors``, default ``~/.cache/sslight/floors``."""
    root = os.environ.get("SSLIGHT_CACHE") or Path.home() / ".cache" / "sslight"
    return Path(root) / "floors"


def floor_key(cfg: Any, protocol: str, kind: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Everything a floor's value depends on (``settings``: the evaluation's own config)."""
    data = cfg.data
    return {
        "version": CACHE_VERSION,
        "protocol": protocol,
        "kind": kind,
        "backbone": cfg.backbone if kind == "random" else None,
        "dataset": data.dataset,
        "root": data.root,
        "image_size": data.image_size,
        "train_subset": data.train_subset,
        "val_subset": data.val_subset,
        "seed": cfg.seed,
        "settings": settings,
    }


def cached_top1(key: dict[str, Any], compute: Callable[[], float]) -> float:
    """The cached value for ``key``, or ``compute()`` stored atomically under the key's hash.
    In a distributed run rank 0 reads and writes the cache, and every rank computes a missing
    value together (``compute`` is data-parallel)."""
    text = json.dumps(key, sort_keys=True)
    path = cache_dir() / f"{hashlib.sha256(text.encode()).hexdigest()[:20]}.json"
    env = current_env()
    cached = broadcast_object(env, _read_cached(path, key) if env.is_main else None)
    if cached is not None:
        return cached
    top1 = float(compute())
    if env.is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            json.dump({"key": key, "top1": top1}, out, sort_keys=True)
        os.replace(tmp, path)
    return top1


def _read_cached(path: Path, key: dict[str, Any]) -> float | None:
    try:
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return float(stored["top1"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # absent or unreadable: compute it again
    return None


def evaluation_floors(
    cfg: Any, protocol: str, settings: dict[str, Any], evaluate: Evaluate
) -> dict[str, float]:
    """``{<protocol>_floor_random_top1, <protocol>_floor_pixels_top1}`` (percent), where
    ``evaluate(backbone)`` runs the protocol's evaluation and returns its top-1."""
    result = {}
    for kind in FLOOR_KINDS:
        key = floor_key(cfg, protocol, kind, settings)

        def compute(kind: str = kind) -> float:
            log.info("%s floor: evaluating a %s backbone (cached afterwards)", protocol, kind)
            return evaluate(floor_backbone(kind, cfg))

        result[f"{protocol}_floor_{kind}_top1"] = cached_top1(key, compute)
    return result


def linear_floor_top1(backbone: nn.Module, cfg: Any, device: torch.device) -> float:
    """Linear evaluation of a floor backbone, its checkpoints in a scratch directory."""
    from sslight.evaluation.linear import linear_eval

    with tempfile.TemporaryDirectory(prefix="sslight-floor-") as scratch:
        return linear_eval(backbone.to(device), cfg, Path(scratch), device)["linear_top1"]
