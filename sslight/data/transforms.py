"""Multi-crop augmentation recipes (DINO, SwAV, MoCo-v2) on uint8 image tensors.

Every view: bicubic RandomResizedCrop → flip, then float32 in [0, 1] → colour jitter →
grayscale → blur (→ solarize) → ImageNet normalisation. A recipe is a list of ``ViewSpec``; the
views are computed for a whole batch at once by ``BatchedMultiCrop`` (sslight/data/batch_views.py),
each sample's from its own seed. ``view_pipeline`` spells a spec as the equivalent per-image
torchvision v2 transforms, the reference those batched maths follow. The recipes follow the
original papers' code (DINO ``main_dino.DataAugmentationDINO``, SwAV ``MultiCropDataset``,
MoCo-v2 ``aug_plus``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from sslight.data.batch_ops import (
    BLUR_SIGMA,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SOLARIZE_THRESHOLD,
    blur_kernel_size,
)
from sslight.data.batch_views import BatchedMultiCrop, ViewSpec
from sslight.registry import Registry

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CropSpec:
    """``number`` crops of ``size`` px, RandomResizedCrop area ``scale`` range."""

    number: int
    size: int
    scale: tuple[float, float]


def _maybe(transform: Transform, p: float) -> list[Transform]:
    if p <= 0.0:
        return []
    return [transform] if p >= 1.0 else [T.RandomApply([transform], p=p)]


def _to_normalised_float() -> list[Transform]:
    return [T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def view_pipeline(spec: ViewSpec) -> T.Compose:
    """``spec`` as per-image torchvision v2 transforms (normalised float32 of ``spec.size``)."""
    brightness, contrast, saturation, hue = spec.jitter
    solarize = T.RandomSolarize(SOLARIZE_THRESHOLD / 255, p=spec.solarize_p)
    return T.Compose(
        [
            T.RandomResizedCrop(
                spec.size,
                scale=spec.scale,
                interpolation=InterpolationMode.BICUBIC,
                antialias=True,
            ),
            T.RandomHorizontalFlip(p=spec.flip_p),
            T.ToDtype(torch.float32, scale=True),
            *_maybe(T.ColorJitter(brightness, contrast, saturation, hue), spec.jitter_p),
            T.RandomGrayscale(p=spec.grayscale_p),
            *_maybe(T.GaussianBlur(blur_kernel_size(spec.size), sigma=BLUR_SIGMA), spec.blur_p),
            *([solarize] if spec.solarize_p > 0 else []),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class MultiCropTransform:
    """``img -> [global views..., local views...]``; global view ``i`` uses
    ``global_specs[i % len(global_specs)]``, every local view ``local_spec``.

    ``batched(images, seeds)`` makes the views of a batch (what the training loader runs); calling
    the transform on one image does the same with a seed drawn from torch's global generator.
    ``views`` gives each view's per-image torchvision form (``view_pipeline``), built on first
    use only: training never needs it.
    """

    def __init__(
        self,
        global_crops: CropSpec,
        local_crops: CropSpec,
        global_specs: Sequence[ViewSpec],
        local_spec: ViewSpec | None,
    ) -> None:
        if global_crops.number < 1:
            raise ValueError(f"need at least one global crop, got {global_crops.number}")
        if local_crops.number > 0 and local_spec is None:
            raise ValueError("local crops requested but no local view given")
        self.global_crops = global_crops
        self.local_crops = local_crops
        specs = [global_specs[i % len(global_specs)] for i in range(global_crops.number)]
        specs += [local_spec] * local_crops.number  # type: ignore[list-item]
        self.batched = BatchedMultiCrop(specs)
        self.specs: tuple[ViewSpec, ...] = self.batched.specs
        self.sizes: list[int] = [spec.size for spec in self.specs]

    @cached_property
    def views(self) -> list[T.Compose]:
        """Each view as the equivalent per-image torchvision v2 pipeline."""
        return [view_pipeline(spec) for spec in self.specs]

    def __call__(self, img: torch.Tensor) -> list[torch.Tensor]:
        seed = int(torch.randint(2**63 - 1, ()))
        return [view[0] for view in self.batched([img], [seed])]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(global_crops={self.global_crops}, "
            f"local_crops={self.local_crops})"
        )


def _spec(crops: CropSpec, jitter: tuple[float, float, float, float], **probs: float) -> ViewSpec:
    return ViewSpec(crops.size, tuple(crops.scale), jitter, **probs)  # type: ignore[arg-type]


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
            _spec(global_crops, jitter, blur_p=1.0),
            _spec(global_crops, jitter, blur_p=0.1, solarize_p=0.2),
        ],
        _spec(local_crops, jitter, blur_p=0.5),
    )


@AUG_RECIPES.register("swav")
def swav_recipe(global_crops: CropSpec, local_crops: CropSpec) -> MultiCropTransform:
    """SwAV: strong jitter (0.8, 0.8, 0.8, 0.2), blur p 0.5 on every view, no solarize."""
    jitter = (0.8, 0.8, 0.8, 0.2)
    return MultiCropTransform(
        global_crops,
        local_crops,
        [_spec(global_crops, jitter, blur_p=0.5)],
        _spec(local_crops, jitter, blur_p=0.5),
    )


@AUG_RECIPES.register("moco")
def moco_recipe(global_crops: CropSpec, local_crops: CropSpec) -> MultiCropTransform:
    """MoCo-v2: jitter (0.4, 0.4, 0.4, 0.1), blur p 0.5 on every view, no solarize."""
    jitter = (0.4, 0.4, 0.4, 0.1)
    return MultiCropTransform(
        global_crops,
        local_crops,
        [_spec(global_crops, jitter, blur_p=0.5)],
        _spec(local_crops, jitter, blur_p=0.5),
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
