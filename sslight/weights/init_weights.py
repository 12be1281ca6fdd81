"""``init.weights``: evaluation stages start from given weights instead of this run's pretraining.

A path is one of (detected from what it holds, not from its name):

- an export (``sslight export``; ``<run>/export/backbone.pt``): a flat state dict in the
  torchvision / timm layout of sslight/weights/layout.py;
- one of our runs: a run directory, its ``checkpoints/`` directory or a ``last.pt`` file; the
  backbone of the network ``eval.network`` names is taken (by default the student: DINO's
  student, MoCo's query encoder, SwAV's network);
- a checkpoint released with the seed repo (``*.pth.tar``, sslight/weights/seed_import.py), or
  the folder of those releases: the file named after the config's method, backbone and view
  policy is taken (``dino_r18_sslight.pth.tar`` for dino × resnet18 × sslight), and in it the
  network ``eval.network`` names (``module.student.`` by default, as the seed evaluates).

Every file is read with :func:`~sslight.weights.safe_unpickle.load_untrusted` (no pickled code
runs). Every tensor of the backbone must be found with its shape; anything else is a
``ConfigError`` naming ``init.weights``, the path and the problem.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslight.config.load import ConfigError, config_to_dict, resolve
from sslight.engine.checkpoint import CheckpointError, load_checkpoint
from sslight.engine.rundir import RunDir
from sslight.engine.train_state import TrainState

log = logging.getLogger(__name__)

KEY = "init.weights"


def network_from_checkpoint(cfg: Any, state: Mapping[str, Any], network: str) -> nn.Module:
    """The network (backbone + projection head) that ``network`` (``eval.network``) names in
    ``cfg``'s method, with the weights of a training checkpoint."""
    from sslight.methods import METHODS, evaluated_network

    method = METHODS.get(cfg.method).build(cfg, num_classes=TrainState.probe_classes(state))
    TrainState.load_weights(method, state)
    return evaluated_network(method, network)


def _fail(path: Path, problem: str, source: str) -> ConfigError:
    return ConfigError(source, KEY, f"{path}: {problem}")


def _read(path: Path, source: str, release: str | None) -> tuple[Any, Path]:
    from sslight.weights.safe_unpickle import UnsafePickleError, load_untrusted

    if path.is_dir() and release and (path / release).is_file():
        path = path / release
    elif path.is_dir():
        checkpoints = RunDir(path).checkpoints
        directory = checkpoints if checkpoints.is_dir() else path
        try:
            state = load_checkpoint(directory)
        except CheckpointError as err:
            raise _fail(path, str(err), source) from None
        if state is None:
            released = f", the released file {release}" if release else ""
            raise _fail(
                path,
                f"a directory without checkpoints/last.pt, last.pt{released}; give a run "
                "directory, an export (backbone.pt) or a checkpoint file",
                source,
            )
        return state, path
    if not path.is_file():
        raise _fail(path, "no such file or directory", source)
    try:
        return load_untrusted(path), path
    except UnsafePickleError as err:
        raise ConfigError(source, KEY, str(err)) from None
    except Exception as err:  # truncated files, not a torch file at all, ...
        problem = f"not a readable torch file ({type(err).__name__}: {err})"
        raise _fail(path, problem, source) from None


def recorded_network(state: Mapping[str, Any], network: str) -> tuple[Any, nn.Module]:
    """The config a training checkpoint records and its ``network``; ``ValueError`` when this
    version cannot read it or the method has no such network."""
    try:
        cfg = resolve(TrainState.recorded_config(state), source="its config")
        return cfg, network_from_checkpoint(cfg, state, network)
    except (ConfigError, KeyError, RuntimeError, ValueError) as err:
        raise ValueError(f"an sslight checkpoint this version cannot read: {err}") from None


def _from_training_checkpoint(state: Mapping[str, Any], network: str) -> tuple[str, dict, dict]:
    cfg, chosen = recorded_network(state, network)
    report = {
        "kind": "sslight checkpoint",
        "method": cfg.method,
        "network": network,
        "trained_epochs": TrainState.epochs_done(state),
    }
    return cfg.backbone, chosen.backbone.state_dict(), report


def _from_export(path: Path, state: Mapping[str, Any], backbone: str) -> tuple[str, dict, dict]:
    from sslight.weights.layout import from_reference

    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    exported_as = meta.get("backbone", backbone)
    report = {"kind": "export", "method": meta.get("method"), "sidecar": sidecar.is_file()}
    return exported_as, from_reference(state, exported_as), report


def _check_fits(
    path: Path, weights: Mapping[str, Any], target: Mapping[str, Any], source: str
) -> None:
    missing = [k for k in target if k not in weights]
    unexpected = [k for k in weights if k not in target]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensors missing ({', '.join(missing[:3])}...)")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])}...)")
        raise _fail(path, "does not fit the backbone: " + "; ".join(parts), source)
    for key, expected in target.items():
        value = weights[key]
        if not isinstance(value, torch.Tensor) or value.shape != expected.shape:
            shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise _fail(
                path, f"{key} is {shape} in the file but {list(expected.shape)} here", source
            )


def load_init_weights(
    path_text: str,
    backbone: str,
    source: str = "config",
    release: str | None = None,
    network: str = "student",
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict of our ``backbone`` held at ``path_text`` and a report of what was loaded
    and what was not; ``ConfigError`` (exit 2 in the CLIs) when it is missing or does not fit.
    ``release``: the file to take when ``path_text`` is a folder of seed releases; ``network``:
    which of a checkpoint's networks (``eval.network``)."""
    from sslight.models.backbones import build_backbone
    from sslight.weights.seed_import import (
        SeedImportError,
        import_seed_backbone,
        is_seed_checkpoint,
    )

    obj, path = _read(Path(path_text).expanduser(), source, release)
    target = build_backbone(backbone).state_dict()
    if TrainState.is_checkpoint(obj):
        try:
            found, weights, report = _from_training_checkpoint(obj, network)
        except ValueError as err:
            raise _fail(path, str(err), source) from None
    elif is_seed_checkpoint(obj):
        try:
            weights, report = import_seed_backbone(obj, backbone, target, network)
        except SeedImportError as err:
            raise _fail(path, f"seed checkpoint: {err}", source) from None
        found = backbone
    elif isinstance(obj, Mapping) and obj and all(isinstance(k, str) for k in obj):
        found, weights, report = _from_export(path, obj, backbone)
    else:
        raise _fail(
            path,
            "neither an export, an sslight checkpoint nor a seed checkpoint "
            f"(a {type(obj).__name__})",
            source,
        )
    if found != backbone:
        raise _fail(
            path, f"holds a {found} backbone, but the config's backbone is {backbone}", source
        )
    _check_fits(path, weights, target, source)
    report = {"path": str(path), "backbone": backbone, **report, "tensors": len(weights)}
    return dict(weights), report


def _load_for(cfg: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from sslight.weights.seed_import import released_name

    release = released_name(cfg.method, cfg.backbone, cfg.views.policy)
    return load_init_weights(
        cfg.init.weights, cfg.backbone, release=release, network=cfg.eval.network
    )


def init_backbone(cfg: Any, device: torch.device) -> nn.Module:
    """``cfg.backbone`` with the weights of ``cfg.init.weights``, frozen, in eval mode."""
    from sslight.models.backbones import build_backbone

    weights, report = _load_for(cfg)
    log.info("init.weights: %s (%s)", report["path"], report["kind"])
    backbone = build_backbone(cfg.backbone)
    backbone.load_state_dict(weights, strict=True)
    backbone.requires_grad_(False)
    return backbone.eval().to(device)


def check_init_weights(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """Load ``cfg.init.weights`` once before any stage runs (bad input fails fast, exit 2) and
    record what was loaded and what was not in ``<run_dir>/init_weights.json``, next to the
    ``config.yaml`` that pretraining would otherwise have written."""
    _, report = _load_for(cfg)
    run = RunDir(run_dir)
    run.record_config(config_to_dict(cfg))
    log.info("init.weights %s: %s, %d tensors", report["path"], report["kind"], report["tensors"])
    run.init_weights.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def init_head(cfg: Any) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The projection head of ``eval.network`` in ``cfg.init.weights`` (``mlp.*`` keys) and where
    it came from; None for an export, which holds the backbone alone."""
    from sslight.weights.seed_import import import_seed_head, is_seed_checkpoint, released_name

    release = released_name(cfg.method, cfg.backbone, cfg.views.policy)
    obj, path = _read(Path(cfg.init.weights).expanduser(), "config", release)
    network = cfg.eval.network
    if TrainState.is_checkpoint(obj):
        try:
            _, chosen = recorded_network(obj, network)
        except ValueError as err:
            raise _fail(path, str(err), "config") from None
        state = chosen.head.state_dict()
        head = {k: v for k, v in state.items() if k.startswith("mlp.")}
        return head, f"{network} head of {path}"
    if is_seed_checkpoint(obj):
        return import_seed_head(obj, network), f"{network} head of the seed release {path}"
    return None, f"{path} is an export: it holds no head"
