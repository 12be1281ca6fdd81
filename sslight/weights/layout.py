"""Where each backbone's weights go in the stock torchvision / timm model (the exchange layout).

Our backbones *are* the torchvision / timm models with the classifier replaced by ``nn.Identity``
(sslight/models/backbones/), so a backbone's export layout (``BackboneSpec.layout``) is a key
prefix to drop and the reference model an exported file loads into with ``strict=True``; only
MobileNetV2 changes names (``features.`` dropped: the export is the state dict of
``torchvision.models.mobilenet_v2().features``, which detection and segmentation code wraps).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from sslight.models.backbones import ExportLayout, backbone_spec


def export_layout(backbone: str) -> ExportLayout:
    """The export layout of backbone ``backbone`` (``KeyError`` listing the allowed names)."""
    return backbone_spec(backbone).layout


def to_reference(state: Mapping[str, torch.Tensor], backbone: str) -> dict[str, torch.Tensor]:
    """Our backbone's state dict → the reference model's key names (tensors cloned, on CPU)."""
    prefix = export_layout(backbone).prefix
    return {key.removeprefix(prefix): value.detach().cpu().clone() for key, value in state.items()}


def from_reference(state: Mapping[str, torch.Tensor], backbone: str) -> dict[str, torch.Tensor]:
    """The reference model's key names → our backbone's."""
    prefix = export_layout(backbone).prefix
    return {f"{prefix}{key}": value for key, value in state.items()}


def reference_model(backbone: str) -> nn.Module:
    """The stock torchvision / timm module an export of ``backbone`` loads into strictly."""
    return export_layout(backbone).build()
