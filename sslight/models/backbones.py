"""Backbones of the SSLight paper (Tan et al., ICLR 2023): MobileNetV2, ResNet18/34, ViT-Tiny/16.

Every backbone maps ``[B, 3, H, W]`` to ``[B, embed_dim]`` features and is built from random
initialisation: no weights are ever downloaded. The returned module is the torchvision / timm model
itself, with only its classifier replaced by ``nn.Identity``, so state-dict keys stay those of
torchvision (``features.*``, ``layer1.*``...) and timm (``blocks.*``, ``cls_token``...). Three
attributes are added for the rest of the library: ``embed_dim``, ``family`` and ``name``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import timm
import torchvision
from torch import nn

from sslight.registry import Registry


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is, without building it.

    ``build`` takes keyword ``drop_path_rate`` (ignored by CNNs) and returns the bare network;
    use :func:`build_backbone` to get it with its ``embed_dim``/``family``/``name`` attributes.
    """

    name: str
    family: str  # "cnn" | "vit"
    embed_dim: int
    patch_size: int | None
    build: Callable[..., nn.Module]


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def _mobilenet_v2(*, drop_path_rate: float = 0.0) -> nn.Module:
    """torchvision MobileNetV2; its forward already does ``features`` → global avg pool → flatten.

    Replacing ``classifier`` (dropout + linear) by ``Identity`` leaves the 1280-d pooled features
    and keeps the ``features.*`` keys of torchvision.
    """
    del drop_path_rate
    model = torchvision.models.mobilenet_v2(weights=None)
    model.classifier = nn.Identity()
    return model


def _resnet(depth: int) -> Callable[..., nn.Module]:
    def build(*, drop_path_rate: float = 0.0) -> nn.Module:
        del drop_path_rate
        factory = torchvision.models.resnet18 if depth == 18 else torchvision.models.resnet34
        model = factory(weights=None)
        model.fc = nn.Identity()
        return model

    build.__doc__ = f"torchvision ResNet{depth} with ``fc`` replaced by Identity (512-d pooled)."
    return build


def _vit_tiny(*, drop_path_rate: float = 0.0) -> nn.Module:
    """timm ViT-Tiny/16 (Touvron et al., 2021 sizes) returning the 192-d CLS token.

    ``dynamic_img_size=True`` interpolates the position embedding on the fly, so any input whose
    sides are multiples of 16 works (16 px = one patch, 32, 96, 128, 224...).
    """
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=0,
        global_pool="token",
        dynamic_img_size=True,
        drop_path_rate=drop_path_rate,
    )


for _spec in (
    BackboneSpec("mobilenet_v2", "cnn", 1280, None, _mobilenet_v2),
    BackboneSpec("resnet18", "cnn", 512, None, _resnet(18)),
    BackboneSpec("resnet34", "cnn", 512, None, _resnet(34)),
    BackboneSpec("vit_tiny", "vit", 192, 16, _vit_tiny),
):
    BACKBONES.register(_spec.name)(_spec)


def backbone_spec(name: str) -> BackboneSpec:
    """Metadata of backbone ``name``; raises ``KeyError`` listing the allowed names."""
    return BACKBONES.get(name)


def build_backbone(name: str, *, drop_path_rate: float = 0.0) -> nn.Module:
    """Build backbone ``name`` from scratch: forward maps ``[B, 3, H, W]`` → ``[B, embed_dim]``.

    ``drop_path_rate`` (stochastic depth) applies to ViTs only; CNNs ignore it. The module carries
    ``embed_dim``, ``family`` and ``name`` attributes.
    """
    spec = backbone_spec(name)
    model = spec.build(drop_path_rate=drop_path_rate)
    model.embed_dim = spec.embed_dim
    model.family = spec.family
    model.name = spec.name
    return model
