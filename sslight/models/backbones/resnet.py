"""ResNet18 / ResNet34 (He et al., CVPR 2016), torchvision's, with ``fc`` replaced by Identity.

An export loads with ``strict=True`` into ``torchvision.models.resnet18()`` / ``resnet34()``
whose ``fc`` was replaced by ``nn.Identity()``; a stock ResNet loads it with ``strict=False``,
reporting exactly ``fc.weight`` and ``fc.bias`` missing (the exported dict has no ``fc.*`` key).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from sslight.models.backbones.spec import BackboneSpec, ExportLayout, FpnBackbone


def resnet(depth: int) -> Callable[..., nn.Module]:
    """The factory of torchvision's ResNet``depth`` with ``fc`` replaced by Identity."""

    def build(*, drop_path_rate: float = 0.0) -> nn.Module:
        import torchvision

        del drop_path_rate
        factory = torchvision.models.resnet18 if depth == 18 else torchvision.models.resnet34
        model = factory(weights=None)
        model.fc = nn.Identity()
        return model

    build.__doc__ = f"torchvision ResNet{depth} with ``fc`` replaced by Identity (512-d pooled)."
    return build


def resnet_without_fc(depth: int) -> Callable[[], nn.Module]:
    """The reference model of an export: the stock ResNet``depth`` with ``fc = Identity``."""

    def build() -> nn.Module:
        import torchvision

        model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        model.fc = nn.Identity()
        return model

    return build


def resnet_fpn(backbone: nn.Module) -> FpnBackbone:
    """C2–C5 → P2–P6 (Detectron2's ``build_resnet_fpn_backbone``, FREEZE_AT 0): the outputs of
    ``layer1..layer4`` (strides 4–32), P6 by max pooling P5; one anchor size per level (32–512),
    RoIs pooled from P2–P5. torchvision's ``_resnet_fpn_extractor`` with every layer trainable."""
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    module = _resnet_fpn_extractor(backbone, 5, [1, 2, 3, 4], LastLevelMaxPool())
    sizes = ((32,), (64,), (128,), (256,), (512,))
    return FpnBackbone(module, sizes, ["0", "1", "2", "3"], post_nms_train=1000)


def resnet_spec(depth: int) -> BackboneSpec:
    """ResNet18 or ResNet34: 512-d pooled features, detection on C2–C5, released as ``r<depth>``.
    channels_last stays off: it slows ResNet18 down on CPU (docs/architecture.md)."""
    return BackboneSpec(
        name=f"resnet{depth}",
        family="cnn",
        embed_dim=512,
        patch_size=None,
        build=resnet(depth),
        layout=ExportLayout(
            prefix="",
            load_into=f"torchvision.models.resnet{depth}() with fc = nn.Identity()",
            build=resnet_without_fc(depth),
        ),
        detection=resnet_fpn,
        released_as=f"r{depth}",
    )


RESNET18 = resnet_spec(18)
RESNET34 = resnet_spec(34)
