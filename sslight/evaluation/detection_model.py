"""Faster R-CNN / Mask R-CNN with an FPN on our pretrained backbones (torchvision's detectors).

Feature maps follow the seed repo's Detectron2 configs:

* ResNet18/34: the outputs of ``layer1..layer4`` (C2–C5, strides 4–32) → P2–P5, plus P6 by max
  pooling P5 (``LastLevelMaxPool``); one anchor size per level (32–512), RoIs pooled from P2–P5.
  This is torchvision's ``_resnet_fpn_extractor`` with every layer trainable.
* MobileNetV2: the last feature map of the stride-16 stage (``features.13``, 96 channels) and of
  the stride-32 stage (``features.18``, 1280 channels) → P4, P5, plus P6 by max pooling (the seed's
  ``stage4``/``stage5`` and ``p4``–``p6``); anchors (32, 64, 128), (64, 128, 256), (128, 256, 512)
  per level, RoIs pooled from P4–P5. torchvision's ``mobilenet_backbone`` is not used: it takes
  the output of the first stride-32 block (``features.14``) as its finer map, so both of its
  levels have stride 32.

The detector wraps the very backbone module it is given (no copy), so the weights it starts from
are the pretrained ones; ``freeze_bn`` first turns every BatchNorm into
``FrozenBatchNorm2d`` with the pretrained statistics and affine parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from sslight.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from sslight.registry import Registry

FPN_CHANNELS = 256
ASPECT_RATIOS = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class FpnBackbone:
    """A backbone + FPN and what the detector heads need to know about its levels."""

    module: BackboneWithFPN
    anchor_sizes: tuple[tuple[int, ...], ...]  # one tuple per FPN output, P6 included
    roi_levels: list[str]  # FPN outputs the RoI heads pool from
    post_nms_train: int  # RPN proposals kept per image in training (seed configs)


FPN_BUILDERS: Registry[Callable[[nn.Module], FpnBackbone]] = Registry("detection backbone")


@FPN_BUILDERS.register("resnet18")
@FPN_BUILDERS.register("resnet34")
def resnet_fpn(backbone: nn.Module) -> FpnBackbone:
    """C2–C5 → P2–P6 (Detectron2's ``build_resnet_fpn_backbone``, FREEZE_AT 0)."""
    module = _resnet_fpn_extractor(backbone, 5, [1, 2, 3, 4], LastLevelMaxPool())
    sizes = ((32,), (64,), (128,), (256,), (512,))
    return FpnBackbone(module, sizes, ["0", "1", "2", "3"], post_nms_train=1000)


@FPN_BUILDERS.register("mobilenet_v2")
def mobilenet_v2_fpn(backbone: nn.Module) -> FpnBackbone:
    """Stride-16 and stride-32 stage outputs → P4–P6 (the seed's ``build_mobilenet_fpn_backbone``
    with ``IN_FEATURES: [stage4, stage5]``)."""
    features = backbone.features
    layers = {"13": "0", str(len(features) - 1): "1"}
    channels = [features[13].out_channels, features[-1].out_channels]
    module = BackboneWithFPN(features, layers, channels, FPN_CHANNELS, LastLevelMaxPool())
    sizes = ((32, 64, 128), (64, 128, 256), (128, 256, 512))
    return FpnBackbone(module, sizes, ["0", "1"], post_nms_train=2000)


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
    if backbone_name not in FPN_BUILDERS:
        raise ValueError(
            f"detection needs a CNN backbone ({', '.join(FPN_BUILDERS.names())}), "
            f"got {backbone_name!r}"
        )
    backbone.requires_grad_(True)  # evaluated backbones arrive frozen
    if det.freeze_bn:
        freeze_batch_norm(backbone)
    fpn = FPN_BUILDERS.get(backbone_name)(backbone)
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
        "box_roi_pool": MultiScaleRoIAlign(fpn.roi_levels, output_size=7, sampling_ratio=2),
    }
    if not masks:
        return FasterRCNN(fpn.module, num_classes, **options)
    mask_pool = MultiScaleRoIAlign(fpn.roi_levels, output_size=14, sampling_ratio=2)
    return MaskRCNN(fpn.module, num_classes, mask_roi_pool=mask_pool, **options)
