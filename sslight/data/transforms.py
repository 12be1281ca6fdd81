"""Multi-crop augmentation recipes (DINO, SwAV, MoCo-v2) on uint8 image tensors.

Every view: bicubic RandomResizedCrop → flip on the uint8 image, then float32 in [0, 1] →
colour jitter → grayscale → blur (→ solarize) → ImageNet normalisation. The colour operations run
on floats: one conversion per view instead of a uint8 round trip (and rounding) per operation.
The recipes follow the original papers' code (DINO ``main_dino.DataAugmentationDINO``, SwAV
``MultiCropDataset``, MoCo-v2 ``aug_plus``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from sslight.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BLUR_SIGMA = (0.1, 2.0)
SOLARIZE_THRESHOLD = 128

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CropSpec:
    """``number`` crops of ``size`` px, RandomResizedCrop area ``scale`` range."""

    number: int
    size: int
    scale: tuple[float, float]


def blur_kernel_size(size: int) -> int:
    """The odd integer nearest 0.1 × ``size``, at least 3 (23 at 224 px)."""
    return max(3, 2 * math.floor((0.1 * size - 1) / 2 + 0.5) + 1)


def _maybe(transform: Transform, p: float) -> list[Transform]:
    if p <= 0.0:
        return []
    return [transform] if p >= 1.0 else [T.RandomApply([transform], p=p)]


def _to_normalised_float() -> list[Transform]:
    return [T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def view_pipeline(
    crop: CropSpec,
    *,
    jitter: tuple[float, float, float, float],
    jitter_p: float = 0.8,
    grayscale_p: float = 0.2,
    blur_p: float = 0.5,
    solarize_p: float = 0.0,
) -> T.Compose:
    """The augmentation of one view, ending in a normalised float32 tensor of ``crop.size``."""
    brightness, contrast, saturation, hue = jitter
    return T.Compose(
        [
            T.RandomResizedCrop(
                crop.size,
                scale=crop.scale,
                interpolation=InterpolationMode.BICUBIC,
                antialias=True,
            ),
            T.RandomHorizontalFlip(p=0.5),
            T.ToDtype(torch.float32, scale=True),
            *_maybe(T.ColorJitter(brightness, contrast, saturation, hue), jitter_p),
            T.RandomGrayscale(p=grayscale_p),
            *_maybe(T.GaussianBlur(blur_kernel_size(crop.size), sigma=BLUR_SIGMA), blur_p),
            *([T.RandomSolarize(SOLARIZE_THRESHOLD / 255, p=solarize_p)] if solarize_p > 0 else []),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class MultiCropTransform:
    """``img -> [global views..., local views...]``; global view ``i`` uses
    ``global_pipelines[i % len(global_pipelines)]``, every local view ``local_pipeline``."""

    def __init__(
        self,
        global_crops: CropSpec,
        local_crops: CropSpec,
        global_pipelines: Sequence[Transform],
        local_pipeline: Transform | None,
    ) -> None:
        if global_crops.number < 1:
            raise ValueError(f"need at least one global crop, got {global_crops.number}")
        if local_crops.number > 0 and local_pipeline is None:
            raise ValueError("local crops requested but no local pipeline given")
        self.global_crops = global_crops
        self.local_crops = local_crops
        self.views: list[Transform] = [
            global_pipelines[i % len(global_pipelines)] for i in range(global_crops.number)
        ]
        self.views += [local_pipeline] * local_crops.number  # type: ignore[list-item]
        self.sizes: list[int] = [global_crops.size] * global_crops.number + [
            local_crops.size
        ] * local_crops.number

    def __call__(self, img: torch.Tensor) -> list[torch.Tensor]:
        return [view(img) for view in self.views]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(global_crops={self.global_crops}, "
            f"local_crops={self.local_crops})"
        )


Recipe = Callable[[CropSpec, CropSpec], MultiCropTransform]
AUG_RECIPES: Registry[Recipe] = Registry("augmentation recipe")


@AUG_RECIPES.register("dino")
def dino_recipe(global_crops: CropSpec, local_crops: CropSpec) -> MultiCropTransform:
    """DINO: blur p 1.0 / 0.1 / 0.5 (global 1 / global 2 / locals), solarize 0.2 on global 2."""
    jitter = (0.4, 0.4, 0.2, 0.1)
    return MultiCropTransform(
        global_crops,
        local_crops,
        [
            view_pipeline(global_crops, jitter=jitter, blur_p=1.0),
            view_pipeline(global_crops, jitter=jitter, blur_p=0.1, solarize_p=0.2),
        ],
        view_pipeline(local_crops, jitter=jitter, blur_p=0.5),
    )


@AUG_RECIPES.register("swav")
def swav_recipe(global_crops: CropSpec, local_crops: CropSpec) -> MultiCropTransform:
    """SwAV: strong jitter (0.8, 0.8, 0.8, 0.2), blur p 0.5 on every view, no solarize."""
    jitter = (0.8, 0.8, 0.8, 0.2)
    return MultiCropTransform(
        global_crops,
        local_crops,
        [view_pipeline(global_crops, jitter=jitter, blur_p=0.5)],
        view_pipeline(local_crops, jitter=jitter, blur_p=0.5),
    )


@AUG_RECIPES.register("moco")
def moco_recipe(global_crops: CropSpec, local_crops: CropSpec) -> MultiCropTransform:
    """MoCo-v2: jitter (0.4, 0.4, 0.4, 0.1), blur p 0.5 on every view, no solarize."""
    jitter = (0.4, 0.4, 0.4, 0.1)
    return MultiCropTransform(
        global_crops,
        local_crops,
        [view_pipeline(global_crops, jitter=jitter, blur_p=0.5)],
        view_pipeline(local_crops, jitter=jitter, blur_p=0.5),
    )


def build_multicrop(
    recipe: str, global_crops: CropSpec, local_crops: CropSpec
) -> MultiCropTransform:
    """The multi-crop transform of augmentation recipe ``recipe`` (see ``AUG_RECIPES.names()``)."""
    return AUG_RECIPES.get(recipe)(global_crops, local_crops)


def eval_transform(image_size: int) -> T.Compose:
    """Resize the shorter side to ``image_size × 256/224`` (bicubic), centre-crop, normalise."""
    return T.Compose(
        [
            T.Resize(
                round(image_size * 256 / 224),
                interpolation=InterpolationMode.BICUBIC,
                antialias=True,
            ),
            T.CenterCrop(image_size),
            *_to_normalised_float(),
        ]
    )


def linear_train_transform(image_size: int) -> T.Compose:
    """Linear-eval and fine-tuning augmentation (DINO ``eval_linear.py``): bicubic
    RandomResizedCrop to ``image_size`` (default area scale 0.08–1) and a horizontal flip."""
    return T.Compose(
        [
            T.RandomResizedCrop(
                image_size, interpolation=InterpolationMode.BICUBIC, antialias=True
            ),
            T.RandomHorizontalFlip(p=0.5),
            *_to_normalised_float(),
        ]
    )
