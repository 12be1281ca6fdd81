"""What a backbone is, in one record: :class:`BackboneSpec`, the registry and the builder.

Everything the library needs to know about a backbone hangs off its spec (docs/architecture.md,
"Adding a backbone"): the factory and feature dimension, the family that picks the method
recipes, the patch size that view presets round to, the memory format that runs it fastest, the
torchvision / timm model its export loads into, how detection builds an FPN on it (or that it
cannot), and the tag of the checkpoints the SSLight paper released for it. Specs import nothing
heavy: factories and builders import torchvision / timm when they are called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from sslight.registry import Registry

if TYPE_CHECKING:
    from torchvision.models.detection.backbone_utils import BackboneWithFPN


@dataclass(frozen=True)
class ExportLayout:
    """Where the backbone's weights go in the stock torchvision / timm model (the exchange
    layout of exports): ``prefix`` is what our state-dict keys carry beyond the reference model's,
    ``load_into`` the reference model in words, ``build`` builds it (randomly initialised)."""

    prefix: str
    load_into: str
    build: Callable[[], nn.Module]


@dataclass(frozen=True)
class FpnBackbone:
    """A backbone + FPN and what the detector heads need to know about its levels."""

    module: BackboneWithFPN
    anchor_sizes: tuple[tuple[int, ...], ...]  # one tuple per FPN output, P6 included
    roi_levels: list[str]  # FPN outputs the RoI heads pool from
    post_nms_train: int  # RPN proposals kept per image in training (seed configs)


FpnBuilder = Callable[[nn.Module], FpnBackbone]


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone, everything about it.

    ``build`` takes keyword ``drop_path_rate`` (ignored by CNNs) and returns the bare network;
    use :func:`build_backbone` to get it with its ``embed_dim``/``family``/``name`` attributes.
    ``family`` ("cnn" | "vit") selects the method recipes and view presets. ``channels_last``:
    the memory format of ``train.channels_last: auto``. ``detection``: builds the FPN the COCO
    stages put on the backbone, ``None`` where the backbone has no feature maps for it (then
    those stages are refused). ``released_as``: the architecture tag in the file names of the
    seed repo's released checkpoints (``None``: the backbone's own name).
    """

    name: str
    family: str
    embed_dim: int
    patch_size: int | None
    build: Callable[..., nn.Module]
    layout: ExportLayout
    channels_last: bool = False
    detection: FpnBuilder | None = None
    released_as: str | None = None


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def backbone_spec(name: str) -> BackboneSpec:
    """Metadata of backbone ``name``; raises ``KeyError`` listing the allowed names."""
    return BACKBONES.get(name)


def detection_backbones() -> list[str]:
    """The registered backbones that declare detection feature maps (the COCO stages' choice)."""
    return [name for name in BACKBONES.names() if BACKBONES.get(name).detection is not None]


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
