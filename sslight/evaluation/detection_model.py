"""Faster R-CNN / Mask R-CNN with an FPN on our pretrained backbones (torchvision's detectors).

Feature maps follow the seed repo's Detectron2 configs; each backbone declares its own FPN
(``BackboneSpec.detection``, sslight/models/backbones/): ResNet18/34 put P2–P6 on C2–C5,
MobileNetV2 P4–P6 on its stride-16 and stride-32 stages. A backbone without one cannot be used.

The detector wraps the very backbone module it is given (no copy), so the weights it starts from
are the pretrained ones; ``freeze_bn`` first turns every BatchNorm into
``FrozenBatchNorm2d`` with the pretrained statistics and affine parameters. The RoI heads are
Detectron2's (sslight/evaluation/detection_heads.py): ROIAlignV2 pooling and an L1 box loss.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops.misc import FrozenBatchNorm2d

from sslight.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from sslight.evaluation.detection_heads import DetectronRoIHeads, roi_pool
from sslight.models.backbones import backbone_spec, detection_backbones

ASPECT_RATIOS = (0.5, 1.0, 2.0)


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by a ``FrozenBatchNorm2d`` holding its
    statistics and affine parameters (in place; returns ``module``)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                frozen.weight.copy_(child.weight)
                frozen.bias.copy_(child.bias)
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen.to(child.weight.device))
        else:
            freeze_batch_norm(child)
    return module


def build_detector(
    backbone: nn.Module,
    backbone_name: str,
    num_classes: int,
    det: object,
    *,
    masks: bool,
) -> FasterRCNN:
    """Mask R-CNN (``masks``) or Faster R-CNN with an FPN on ``backbone``, which is used in place.

    ``det`` is the ``eval.detection`` config; ``num_classes`` counts the background.
    """
    build_fpn = backbone_spec(backbone_name).detection
    if build_fpn is None:
        raise ValueError(
            f"detection needs a CNN backbone ({', '.join(detection_backbones())}), "
            f"got {backbone_name!r}"
        )
    backbone.requires_grad_(True)  # evaluated backbones arrive frozen
    if det.freeze_bn:
        freeze_batch_norm(backbone)
    fpn = build_fpn(backbone)
    anchors = AnchorGenerator(fpn.anchor_sizes, (ASPECT_RATIOS,) * len(fpn.anchor_sizes))
    options = {
        "min_size": tuple(det.min_size_train),
        "max_size": det.max_size,
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
        "rpn_anchor_generator": anchors,
        "rpn_post_nms_top_n_train": fpn.post_nms_train,
        "rpn_batch_size_per_image": det.rpn_batch_size_per_image,
        "box_batch_size_per_image": det.roi_batch_size_per_image,
        "rpn_post_nms_top_n_test": det.rpn_proposals_test,
        "box_detections_per_img": det.detections_per_image,
        "box_roi_pool": roi_pool(fpn.roi_levels, 7, det),
    }
    if masks:
        options["mask_roi_pool"] = roi_pool(fpn.roi_levels, 14, det)
    model = (MaskRCNN if masks else FasterRCNN)(fpn.module, num_classes, **options)
    model.roi_heads = DetectronRoIHeads.replacing(model.roi_heads, det.box_smooth_l1_beta)
    return model
