"""Networks: backbones, the multi-crop forward and projection heads."""

from sslight.models.backbones import BACKBONES, BackboneSpec, backbone_spec, build_backbone
from sslight.models.heads import DINOHead, ProjectionHead
from sslight.models.multicrop import forward_multicrop, resolution_groups

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "DINOHead",
    "ProjectionHead",
    "backbone_spec",
    "build_backbone",
    "forward_multicrop",
    "resolution_groups",
]
