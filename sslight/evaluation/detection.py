"""COCO transfer for the ``detection`` and ``segmentation`` stages (the paper's COCO columns).

``detection`` fine-tunes Faster R-CNN + FPN, ``segmentation`` Mask R-CNN + FPN, both starting
from the run's pretrained backbone (the method's evaluated one, see
``sslight.weights.eval_backbone.load_eval_backbone``), on the COCO-format root of
``eval.detection.data_root`` (unset or ``synthetic``: Fashion-MNIST items on canvases, made on
first use). Results, in percent: ``detection_box_ap``/``_ap50``/``_ap75``;
``segmentation_box_ap``, ``segmentation_mask_ap``/``_ap50``/``_ap75``. Training checkpoints go
to ``checkpoints/<stage>/`` (the stage resumes from there) and its loss log to
``<stage>_log.jsonl``.

In a distributed run every rank trains on its share of each aspect-ratio grouped global batch
(``eval.detection.batch_size``, DistributedDataParallel; batch norm over the global batch unless
``freeze_bn``, sslight/evaluation/data_parallel.py) and predicts a contiguous shard of the
validation images; rank 0 gathers the predictions, scores them and writes log and checkpoints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslight.data.coco import CocoDetection
from sslight.data.sources import DataRootError
from sslight.data.synthetic_coco import ensure_synthetic_coco
from sslight.engine.distributed import DistEnv, broadcast_object, current_env, gather_objects
from sslight.engine.rundir import RunDir
from sslight.evaluation.coco_eval import coco_ap, predict
from sslight.evaluation.data_parallel import shard, sync_batch_norm
from sslight.evaluation.detection_model import build_detector
from sslight.evaluation.detection_train import train_detector
from sslight.inputs import SYNTHETIC_COCO
from sslight.models.backbones import backbone_spec, detection_backbones

log = logging.getLogger(__name__)


def detection_data(det: Any, masks: bool) -> tuple[CocoDetection, CocoDetection]:
    """Train and val splits of ``eval.detection.data_root`` (the synthetic set when unset); val
    items carry no masks: COCOeval reads the ground truth from the annotation file."""
    if det.data_root in (None, "", SYNTHETIC_COCO):
        root = ensure_synthetic_coco(det.synthetic_canvas_size, tuple(det.synthetic_images))
        splits = ("train", "val")
    else:
        root, splits = Path(det.data_root).expanduser(), (det.train_split, det.val_split)
    train = CocoDetection(root, splits[0], masks=masks, train=True)
    val = CocoDetection(root, splits[1], masks=False, train=False, max_images=det.val_images)
    if val.category_ids != train.category_ids:
        raise DataRootError(f"{root}: the {splits[1]} categories differ from the {splits[0]} ones")
    if not val.coco.getAnnIds(imgIds=val.image_ids):
        raise DataRootError(f"{val.annotation_file}: no annotation on the evaluated images")
    return train, val


def transfer(
    backbone: nn.Module, cfg: Any, run_dir: Path, device: torch.device, *, masks: bool
) -> dict[str, float]:
    """Fine-tune an R-CNN on ``backbone`` (used in place) and return its COCO APs in percent."""
    det, stage = cfg.eval.detection, "segmentation" if masks else "detection"
    if backbone_spec(cfg.backbone).detection is None:
        raise ValueError(
            f"stage {stage!r} needs a CNN backbone ({', '.join(detection_backbones())}), "
            f"got {cfg.backbone!r}"
        )
    env = current_env()
    train, val = detection_data(det, masks)
    torch.manual_seed(cfg.seed)  # the heads' initialisation
    model = build_detector(backbone, cfg.backbone, train.num_classes, det, masks=masks)
    model = sync_batch_norm(model, env, device) if not det.freeze_bn else model
    model.to(device)
    if env.enabled:  # each rank its own random image sizes and samplings
        torch.manual_seed(cfg.seed + env.rank)
    run_dir = Path(run_dir)
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    train_detector(
        model,
        train,
        det,
        seed=cfg.seed,
        workers=cfg.data.num_workers,
        device=device,
        checkpoint_dir=RunDir(run_dir).checkpoints / stage,
        log_file=run_dir / f"{stage}_log.jsonl",
        log_every=cfg.train.log_every_steps,
        env=env,
    )
    model.transform.min_size = (det.min_size_test,)
    return broadcast_object(env, _evaluate(model, val, det, cfg, device, env, masks))


def _evaluate(
    model: nn.Module,
    val: CocoDetection,
    det: Any,
    cfg: Any,
    device: torch.device,
    env: DistEnv,
    masks: bool,
) -> dict[str, float] | None:
    """COCO APs of ``model`` on ``val``: each rank predicts its shard of the images, rank 0
    scores them all (the other ranks get None)."""
    images = shard(None, len(val), env)
    positions = None if images is None else images.tolist()
    results = predict(model, val, device, det.batch_size, cfg.data.num_workers, positions)
    every = [entry for part in gather_objects(env, results) for entry in part]
    if not env.is_main:
        return None
    box = coco_ap(val, every, "bbox")
    if not masks:
        return {f"detection_box_{name}": value for name, value in box.items()}
    mask = coco_ap(val, every, "segm")
    return {
        "segmentation_box_ap": box["ap"],
        **{f"segmentation_mask_{name}": value for name, value in mask.items()},
    }
