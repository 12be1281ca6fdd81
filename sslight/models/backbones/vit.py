"""ViT-Tiny/16 (Dosovitskiy et al., ICLR 2021; DeiT-Tiny sizes, Touvron et al., ICML 2021), timm's.

An export loads with ``strict=True`` into ``timm.create_model("vit_tiny_patch16_224",
num_classes=0)``. No detection feature maps: the COCO stages are refused for it.
"""

from __future__ import annotations

from torch import nn

from sslight.models.backbones.spec import BackboneSpec, ExportLayout


def vit_tiny(*, drop_path_rate: float = 0.0) -> nn.Module:
    """timm ViT-Tiny/16 returning the 192-d CLS token.

    ``dynamic_img_size=True`` interpolates the position embedding on the fly, so any input whose
    sides are multiples of 16 works (16 px = one patch, 32, 96, 128, 224...).
    """
    import timm

    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=0,
        global_pool="token",
        dynamic_img_size=True,
        drop_path_rate=drop_path_rate,
    )


def timm_vit_tiny() -> nn.Module:
    """The reference model of an export: timm's stock ViT-Tiny/16 without classifier."""
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)


SPEC = BackboneSpec(
    name="vit_tiny",
    family="vit",
    embed_dim=192,
    patch_size=16,
    build=vit_tiny,
    # ViTs do not use 4-D activations past the patch embedding: channels_last stays off
    layout=ExportLayout(
        "", 'timm.create_model("vit_tiny_patch16_224", num_classes=0)', timm_vit_tiny
    ),
    released_as="vitt16",
)
