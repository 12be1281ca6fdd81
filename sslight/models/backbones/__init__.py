"""Backbones of the SSLight paper (Tan et al., ICLR 2023): MobileNetV2, ResNet18/34, ViT-Tiny/16.

Every backbone maps ``[B, 3, H, W]`` to ``[B, embed_dim]`` features and is built from random
initialisation: no weights are ever downloaded. The returned module is the torchvision / timm model
itself, with only its classifier replaced by ``nn.Identity``, so state-dict keys stay those of
torchvision (``features.*``, ``layer1.*``...) and timm (``blocks.*``, ``cls_token``...). Three
attributes are added for the rest of the library: ``embed_dim``, ``family`` and ``name``.

One module per family declares its :class:`BackboneSpec`; adding a backbone is a spec and one
registration line here (docs/architecture.md).
"""

from sslight.models.backbones import mobilenet_v2, resnet, vit
from sslight.models.backbones.spec import (
    BACKBONES,
    BackboneSpec,
    ExportLayout,
    FpnBackbone,
    backbone_spec,
    build_backbone,
    detection_backbones,
)

BACKBONES.register("mobilenet_v2")(mobilenet_v2.SPEC)
BACKBONES.register("resnet18")(resnet.RESNET18)
BACKBONES.register("resnet34")(resnet.RESNET34)
BACKBONES.register("vit_tiny")(vit.SPEC)

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "ExportLayout",
    "FpnBackbone",
    "backbone_spec",
    "build_backbone",
    "detection_backbones",
]
