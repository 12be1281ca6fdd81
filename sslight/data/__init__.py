"""Datasets, stratified subsets, multi-crop augmentations and deterministic loaders."""

from sslight.data.loader import (
    EpochSampler,
    EvalDataset,
    MultiCropDataset,
    build_eval_loader,
    build_train_loader,
    collate_views,
    sample_seed,
)
from sslight.data.sources import (
    SOURCES,
    DataRootError,
    FileImageSource,
    ImageSource,
    TensorImageSource,
    build_source,
    default_data_root,
)
from sslight.data.subset import stratified_subset
from sslight.data.transforms import (
    AUG_RECIPES,
    CropSpec,
    MultiCropTransform,
    blur_kernel_size,
    build_multicrop,
    eval_transform,
    linear_train_transform,
)

__all__ = [
    "AUG_RECIPES",
    "SOURCES",
    "CropSpec",
    "DataRootError",
    "EpochSampler",
    "EvalDataset",
    "FileImageSource",
    "ImageSource",
    "MultiCropDataset",
    "MultiCropTransform",
    "TensorImageSource",
    "blur_kernel_size",
    "build_eval_loader",
    "build_multicrop",
    "build_source",
    "build_train_loader",
    "collate_views",
    "default_data_root",
    "eval_transform",
    "linear_train_transform",
    "sample_seed",
    "stratified_subset",
]
