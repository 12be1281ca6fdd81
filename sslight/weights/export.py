"""Export a run's backbone for use outside sslight: ``backbone.pt`` + ``backbone.json``.

``backbone.pt`` is a plain state dict (``torch.load(..., weights_only=True)``) of the backbone
the evaluations use, in the torchvision / timm layout its ``BackboneSpec`` declares
(sslight/weights/layout.py): the network ``eval.network`` names (``MethodSpec.networks``), by
default the student as the seed (DINO's student, SwAV's network, MoCo-v2's query encoder).
``backbone.json`` says what it is: method, backbone, network, view policy, epochs, the metrics of
``result.json``, the config key (the grid's key: the resolved config with ``output_dir`` blanked)
and what the file loads into.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from sslight.config.load import ConfigError, config_key, load_yaml, resolve
from sslight.engine.rundir import RunDir
from sslight.methods import METHODS
from sslight.stages.names import PRETRAIN
from sslight.weights.eval_backbone import load_eval_backbone
from sslight.weights.layout import export_layout, to_reference

FORMAT = "sslight-backbone/1"
EXPORT_FILE = Path("export") / "backbone.pt"  # under the run directory


def _atomic_save(write: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def sidecar_for(cfg: Any, result: dict[str, Any], tensors: int) -> dict[str, Any]:
    """What an export is: enough to know where it came from without the run directory."""
    metrics = {
        key: value
        for key, value in result.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return {
        "format": FORMAT,
        "method": cfg.method,
        "backbone": cfg.backbone,
        "network": METHODS.get(cfg.method).networks[cfg.eval.network].label,
        "eval_network": cfg.eval.network,
        "view_policy": cfg.views.policy,
        "epochs": cfg.train.epochs,
        "image_size": cfg.data.image_size,
        "dataset": cfg.data.dataset,
        "metrics": metrics,
        "config_key": config_key(cfg.model_copy(update={"output_dir": ""})),
        "load_into": export_layout(cfg.backbone).load_into,
        "tensors": tensors,
    }


def write_export(cfg: Any, backbone: torch.nn.Module, out: Path, result: dict[str, Any]) -> Path:
    """Write ``out`` (the state dict) and ``out`` with suffix ``.json`` (the sidecar)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    state = to_reference(backbone.state_dict(), cfg.backbone)
    _atomic_save(lambda tmp: torch.save(state, tmp), out)
    update_sidecar(cfg, out, result, len(state))
    return out


def update_sidecar(cfg: Any, out: Path, result: dict[str, Any], tensors: int | None = None) -> None:
    """Rewrite the sidecar of ``out`` with the current metrics (after later stages)."""
    sidecar = out.with_suffix(".json")
    if tensors is None:
        tensors = json.loads(sidecar.read_text()).get("tensors") if sidecar.is_file() else None
    text = json.dumps(sidecar_for(cfg, result, tensors), indent=2, sort_keys=True) + "\n"
    _atomic_save(lambda tmp: tmp.write_text(text), sidecar)


def export_run(run_dir: str | Path, out: str | Path | None = None, cfg: Any = None) -> Path:
    """Export the evaluated backbone of ``run_dir`` (its finished or latest checkpointed
    pretraining, or its ``init.weights``) to ``out`` (default ``<run_dir>/export/backbone.pt``).
    ``cfg`` defaults to ``<run_dir>/config.yaml``. ``ConfigError`` when there is nothing to export.
    """
    run = RunDir(run_dir)
    if cfg is None:
        if not run.config.is_file():
            raise ConfigError(
                "command line", "RUN_DIR", f"{run.root}: not a run directory (no config.yaml)"
            )
        raw = {**load_yaml(run.config), "output_dir": str(run.root)}
        cfg = resolve(raw, source=str(run.config))
    try:
        backbone = load_eval_backbone(cfg, run.root, torch.device("cpu"))
    except FileNotFoundError as err:
        raise ConfigError("command line", "RUN_DIR", str(err)) from None
    target = Path(out) if out is not None else run.root / EXPORT_FILE
    return write_export(cfg, backbone, target, run.read_result())


def refresh_export(cfg: Any, run_dir: Path, stage: str, result: dict[str, Any]) -> None:
    """The pipeline's hook after each stage: pretraining writes ``<run_dir>/export/backbone.pt``
    and its sidecar; a later stage refreshes the sidecar's metrics."""
    out = RunDir(run_dir).root / EXPORT_FILE
    if stage == PRETRAIN:
        write_export(cfg, load_eval_backbone(cfg, run_dir, torch.device("cpu")), out, result)
    elif out.is_file():
        update_sidecar(cfg, out, result)
