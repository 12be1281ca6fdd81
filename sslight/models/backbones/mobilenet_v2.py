"""MobileNetV2 (Sandler et al., CVPR 2018), torchvision's, as the SSLight paper trains it.

The exchange layout is the state dict of ``torchvision.models.mobilenet_v2().features`` (our
``features.`` prefix dropped), which is what detection and segmentation code wraps.
"""

from __future__ import annotations

from torch import nn

from sslight.models.backbones.spec import BackboneSpec, ExportLayout, FpnBackbone

FPN_CHANNELS = 256


def mobilenet_v2(*, drop_path_rate: float = 0.0) -> nn.Module:
    """torchvision MobileNetV2; its forward already does ``features`` → global avg pool → flatten.

    Replacing ``classifier`` (dropout + linear) by ``Identity`` leaves the 1280-d pooled features
    and keeps the ``features.*`` keys of torchvision.
    """
    import torchvision

    del drop_path_rate
    model = torchvision.models.mobilenet_v2(weights=None)
    model.classifier = nn.Identity()
    return model


def mobilenet_v2_features() -> nn.Module:
    """The reference model of an export: torchvision's ``mobilenet_v2().features``."""
    import torchvision

    return torchvision.models.mobilenet_v2(weights=None).features


def mobilenet_v2_fpn(backbone: nn.Module) -> FpnBackbone:
    """Stride-16 and stride-32 stage outputs → P4–P6 (the seed's ``build_mobilenet_fpn_backbone``
    with ``IN_FEATURES: [stage4, stage5]``): the last feature map of the stride-16 stage
    (``features.13``, 96 channels) and of the stride-32 stage (``features.18``, 1280 channels);
    anchors (32, 64, 128), (64, 128, 256), (128, 256, 512) per level, RoIs pooled from P4–P5.
    torchvision's ``mobilenet_backbone`` is not used: it takes the output of the first stride-32
    block (``features.14``) as its finer map, so both of its levels have stride 32."""
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    features = backbone.features
    layers = {"13": "0", str(len(features) - 1): "1"}
    channels = [features[13].out_channels, features[-1].out_channels]
    module = BackboneWithFPN(features, layers, channels, FPN_CHANNELS, LastLevelMaxPool())
    sizes = ((32, 64, 128), (64, 128, 256), (128, 256, 512))
    return FpnBackbone(module, sizes, ["0", "1"], post_nms_train=2000)


SPEC = BackboneSpec(
    name="mobilenet_v2",
    family="cnn",
    embed_dim=1280,
    patch_size=None,
    build=mobilenet_v2,
    layout=ExportLayout(
        "features.", "torchvision.models.mobilenet_v2().features", mobilenet_v2_features
    ),
    # measured on a 2-core AVX2 CPU (docs/architecture.md): channels_last is ~1.3x faster
    channels_last=True,
    detection=mobilenet_v2_fpn,
    released_as="mnv2",
)
