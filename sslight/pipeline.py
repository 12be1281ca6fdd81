"""``sslight run``: pretrain, then evaluate, stage by stage, recording everything in result.json.

A stage already marked done in ``result.json`` is skipped; pretraining, linear and semi-supervised
stages resume from their own checkpoints; a failing stage records
``{"error": {"stage", "message"}}`` and leaves the finished stages untouched.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslight.config.load import config_to_dict
from sslight.engine.checkpoint import load_checkpoint
from sslight.engine.monitors import RunCollapsed
from sslight.engine.rundir import RunDir
from sslight.engine.runtime import Runtime
from sslight.engine.trainer import pretrain
from sslight.registry import Registry

log = logging.getLogger(__name__)

StageFn = Callable[[Any, Path, torch.device], dict[str, Any]]
EpochHook = Callable[[dict[str, Any]], None]
STAGES: Registry[StageFn] = Registry("stage")


class StageError(RuntimeError):
    """A stage failed; its message is recorded in result.json."""

    def __init__(self, stage: str, message: str) -> None:
        self.stage = stage
        super().__init__(f"stage {stage!r} failed: {message}")


def load_eval_backbone(cfg: Any, run_dir: Path, device: torch.device) -> nn.Module:
    """The backbone the method evaluates (DINO: teacher; SwAV: the network; MoCo: query encoder),
    with the weights of the finished pretraining, or those of ``init.weights`` when it is set
    (an export, a run or a seed checkpoint: sslight/weights/init_weights.py)."""
    from sslight.weights.init_weights import eval_backbone_from_checkpoint, init_backbone

    if cfg.init.weights:
        return init_backbone(cfg, device)
    state = load_checkpoint(run_dir / "checkpoints")
    if state is None:
        raise FileNotFoundError(f"{run_dir / 'checkpoints'}: no pretraining checkpoint")
    backbone = eval_backbone_from_checkpoint(cfg, state)
    backbone.requires_grad_(False)
    return backbone.eval().to(device)


@STAGES.register("pretrain")
def _pretrain(
    cfg: Any, run_dir: Path, device: torch.device, on_epoch: EpochHook | None = None
) -> dict[str, Any]:
    return pretrain(cfg, on_epoch=on_epoch)


@STAGES.register("knn")
def _knn(cfg: Any, run_dir: Path, device: torch.device) -> dict[str, Any]:
    from sslight.evaluation.floors import evaluation_floors

    result = _knn_metrics(load_eval_backbone(cfg, run_dir, device), cfg, device)
    if cfg.eval.floors:
        settings = cfg.eval.knn.model_dump(include={"k", "temperature"})
        floors = evaluation_floors(
            cfg, "knn", settings, lambda backbone: _knn_metrics(backbone, cfg, device)["knn_top1"]
        )
        result.update(floors)
    return result


def _knn_metrics(backbone: nn.Module, cfg: Any, device: torch.device) -> dict[str, float]:
    from sslight.data import build_eval_loader, build_source, stratified_subset
    from sslight.engine.knn import extract_features, knn_accuracy

    data, knn = cfg.data, cfg.eval.knn
    splits = []
    for split, subset in (("train", data.train_subset), ("val", data.val_subset)):
        source = build_source(
            data.dataset, data.root, split, image_size=data.image_size, download=data.download
        )
        indices = stratified_subset(source.labels, subset, cfg.seed) if subset else None
        loader = build_eval_loader(
            source, data.image_size, 256, indices=indices, num_workers=data.num_workers
        )
        splits.append(extract_features(backbone, loader, device))
    accuracy = knn_accuracy(*splits[0], *splits[1], knn.k, knn.temperature)
    return {"knn_top1": accuracy[knn.k[0]], **{f"knn_top1_k{k}": v for k, v in accuracy.items()}}


@STAGES.register("linear")
def _linear(cfg: Any, run_dir: Path, device: torch.device) -> dict[str, Any]:
    from sslight.evaluation.floors import evaluation_floors, linear_floor_top1
    from sslight.evaluation.linear import linear_eval

    result = linear_eval(load_eval_backbone(cfg, run_dir, device), cfg, run_dir, device)
    if cfg.eval.floors:
        settings = cfg.eval.linear.model_dump()
        floors = evaluation_floors(
            cfg, "linear", settings, lambda backbone: linear_floor_top1(backbone, cfg, device)
        )
        result.update(floors)
    return result


def semi_stage(fraction: float, epochs: int) -> StageFn:
    def stage(cfg: Any, run_dir: Path, device: torch.device) -> dict[str, Any]:
        from sslight.evaluation.semi import semi_supervised

        backbone = load_eval_backbone(cfg, run_dir, device)
        return semi_supervised(backbone, cfg, fraction, epochs, run_dir, device)

    return stage


def stage_names(semi_fractions: list[float]) -> list[str]:
    """Every stage a config can run: the registry plus one ``semi_<p>`` per label fraction."""
    from sslight.evaluation.semi import percent_tag

    return [*STAGES.names(), *(f"semi_{percent_tag(f)}" for f in semi_fractions)]


def _stage_fn(cfg: Any, name: str) -> StageFn:
    from sslight.evaluation.semi import percent_tag

    semi = cfg.eval.semi
    for fraction, epochs in zip(semi.fractions, semi.epochs, strict=True):
        if name == f"semi_{percent_tag(fraction)}":
            return semi_stage(fraction, epochs)
    return STAGES.get(name)


def run(
    cfg: Any,
    on_stage: Callable[[str], None] | None = None,
    on_epoch: EpochHook | None = None,
) -> dict[str, Any]:
    """Run every stage of ``cfg.stages`` not yet done; return the whole result.json.

    ``on_stage(name)`` is called as each stage starts (the orchestrator records it);
    ``on_epoch(summary)`` after each pretraining epoch (see ``engine.trainer.pretrain``)."""
    run_dir = RunDir(cfg.output_dir)
    if int(os.environ.get("RANK", "0")) != 0:  # other ranks join pretraining; rank 0 does the rest
        return pretrain(cfg, on_epoch=on_epoch) if "pretrain" in cfg.stages else {}
    run_dir.create()
    run_dir.check_config(config_to_dict(cfg))  # another config on this run: bad input, first
    if cfg.init.weights:  # a missing or misfitting file is bad input (exit 2), before any stage
        from sslight.weights.init_weights import check_init_weights

        check_init_weights(cfg, run_dir.root)
    for name in cfg.stages:
        done = run_dir.read_result().get("stages", {}).get(name, {})
        if done.get("status") == "done":
            log.info("stage %s already done; skipping", name)
            continue
        started = time.time()
        log.info("stage %s: starting", name)
        if on_stage is not None:
            on_stage(name)
        try:
            device = Runtime.from_config(cfg.train, cfg.backbone).device
            hooks = {"on_epoch": on_epoch} if name == "pretrain" and on_epoch else {}
            metrics = _stage_fn(cfg, name)(cfg, run_dir.root, device, **hooks)
            from sslight.weights.export import refresh_export  # export/ after pretraining

            refresh_export(cfg, run_dir.root, name, {**run_dir.read_result(), **metrics})
        except Exception as err:
            collapsed = isinstance(err, RunCollapsed)  # message starts "collapsed:"
            message = str(err) if collapsed else f"{type(err).__name__}: {err}"
            run_dir.update_result(
                {
                    "error": {
                        "stage": name,
                        "message": message,
                        "traceback": traceback.format_exc(limit=8),
                    }
                }
            )
            raise StageError(name, message) from err
        result = run_dir.read_result()
        stages = {
            **result.get("stages", {}),
            name: {"status": "done", "seconds": round(time.time() - started, 2)},
        }
        update = {**metrics, "stages": stages}
        if (result.get("error") or {}).get("stage") == name:
            update["error"] = None  # the failure this stage recorded earlier is resolved
        run_dir.update_result(update)
        log.info("stage %s: done in %.1fs", name, time.time() - started)
    return run_dir.read_result()


from sslight.evaluation import detection as _detection  # noqa: E402, F401  (registers its stages)
