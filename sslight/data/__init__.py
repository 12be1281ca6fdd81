"""Datasets, stratified subsets, multi-crop augmentations and deterministic loaders.

Names are imported on first use (PEP 562): resolving a config lists the dataset registry
(:mod:`sslight.data.sources`) and must not import torchvision, which the loaders and transforms
do (and torchvision's own import pulls in its detection models).
"""

from __future__ import annotations

from sslight.lazy import lazy_exports

_EXPORTS = {
    "AUG_RECIPES": "sslight.data.transforms",
    "BatchedMultiCrop": "sslight.data.batch_views",
    "CropSpec": "sslight.data.transforms",
    "DataRootError": "sslight.data.sources",
    "EpochSampler": "sslight.data.loader",
    "EvalDataset": "sslight.data.loader",
    "FileImageSource": "sslight.data.sources",
    "ImageBatch": "sslight.data.device_views",
    "ImageSource": "sslight.data.sources",
    "MultiCropDataset": "sslight.data.loader",
    "MultiCropTransform": "sslight.data.transforms",
    "SOURCES": "sslight.data.sources",
    "TensorImageSource": "sslight.data.sources",
    "blur_kernel_size": "sslight.data.transforms",
    "build_eval_loader": "sslight.data.loader",
    "build_multicrop": "sslight.data.transforms",
    "build_source": "sslight.data.sources",
    "build_train_loader": "sslight.data.loader",
    "collate_views": "sslight.data.loader",
    "default_data_root": "sslight.data.sources",
    "eval_transform": "sslight.data.transforms",
    "linear_train_transform": "sslight.data.transforms",
    "resolve_views_device": "sslight.data.device_views",
    "sample_seed": "sslight.data.loader",
    "stratified_subset": "sslight.data.subset",
    "views_of_batch": "sslight.data.device_views",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
