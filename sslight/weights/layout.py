"""Where each backbone's weights go in the stock torchvision / timm model (the exchange layout).

Our backbones *are* the torchvision / timm models with the classifier replaced by ``nn.Identity``
(sslight/models/backbones.py), so only MobileNetV2 changes names: the exchange layout is the state
dict of ``torchvision.models.mobilenet_v2().features`` (our ``features.`` prefix dropped), which
is what detection and segmentation code wraps. Precisely, an exported file loads with
``strict=True`` into:

- ``mobilenet_v2``: ``torchvision.models.mobilenet_v2().features``
- ``resnet18`` / ``resnet34``: ``torchvision.models.resnet18()`` / ``resnet34()`` whose ``fc`` was
  replaced by ``nn.Identity()``; a stock ResNet loads it with ``strict=False``, reporting exactly
  ``fc.weight`` and ``fc.bias`` missing (the exported dict has no ``fc.*`` key)
- ``vit_tiny``: ``timm.create_model("vit_tiny_patch16_224", num_classes=0)``
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from sslight.registry import Registry


@dataclass(frozen=True)
class ReferenceLayout:
    """``prefix``: what our backbone's keys carry beyond the reference model's; ``load_into``:
    the reference model in words; ``build``: builds it (randomly initialised)."""

    prefix: str
    load_into: str
    build: Callable[[], nn.Module]


def _mobilenet_v2_features() -> nn.Module:
    import torchvision

    return torchvision.models.mobilenet_v2(weights=None).features


def _resnet_without_fc(depth: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        model.fc = nn.Identity()
        return model

    return build


def _timm_vit_tiny() -> nn.Module:
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)


LAYOUTS: Registry[ReferenceLayout] = Registry("backbone layout")
for _name, _layout in (
    (
        "mobilenet_v2",
        ReferenceLayout(
            "features.", "torchvision.models.mobilenet_v2().features", _mobilenet_v2_features
        ),
    ),
    (
        "resnet18",
        ReferenceLayout(
            "", "torchvision.models.resnet18() with fc = nn.Identity()", _resnet_without_fc(18)
        ),
    ),
    (
        "resnet34",
        ReferenceLayout(
            "", "torchvision.models.resnet34() with fc = nn.Identity()", _resnet_without_fc(34)
        ),
    ),
    (
        "vit_tiny",
        ReferenceLayout(
            "", 'timm.create_model("vit_tiny_patch16_224", num_classes=0)', _timm_vit_tiny
        ),
    ),
):
    LAYOUTS.register(_name)(_layout)


def to_reference(state: Mapping[str, torch.Tensor], backbone: str) -> dict[str, torch.Tensor]:
    """Our backbone's state dict → the reference model's key names (tensors cloned, on CPU)."""
    prefix = LAYOUTS.get(backbone).prefix
    return {key.removeprefix(prefix): value.detach().cpu().clone() for key, value in state.items()}


def from_reference(state: Mapping[str, torch.Tensor], backbone: str) -> dict[str, torch.Tensor]:
    """The reference model's key names → our backbone's."""
    prefix = LAYOUTS.get(backbone).prefix
    return {f"{prefix}{key}": value for key, value in state.items()}


def reference_model(backbone: str) -> nn.Module:
    """The stock torchvision / timm module an export of ``backbone`` loads into strictly."""
    return LAYOUTS.get(backbone).build()
