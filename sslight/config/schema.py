"""The run config (docs/architecture.md, "The run config"): typed, validated, with located errors.

Method-specific sections (``dino:``, ``swav:``, ``moco:``) come from the method registry when
``run_config_model()`` first builds the model, so adding a method never edits this file.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

from pydantic import Field, ValidationInfo, create_model, field_validator, model_validator

from sslight.config.base import StrictModel
from sslight.config.evaluation import EvalConfig
from sslight.models.backbones import BACKBONES, detection_backbones
from sslight.stages.names import COCO_STAGES, stage_names

ViewPolicy = Literal["baseline", "sslight", "custom"]


class CropConfig(StrictModel):
    """``number`` crops of ``size`` px, RandomResizedCrop area fraction in ``scale``."""

    number: int = Field(ge=0, le=64)
    size: int = Field(ge=1, le=1024)
    scale: tuple[float, float]

    @field_validator("scale")
    @classmethod
    def _scale_in_range(cls, scale: tuple[float, float]) -> tuple[float, float]:
        low, high = scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"must satisfy 0 < min <= max <= 1, got [{low}, {high}]")
        return scale


class LossWeights(StrictModel):
    """SSLight's split of the loss: w_gg · mean(global–global) + w_gl · mean(global–local)."""

    global_global: float = Field(ge=0, le=1)
    global_local: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> LossWeights:
        total = self.global_global + self.global_local
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"global_global + global_local must sum to 1, got {total:g}")
        return self


class ViewsConfig(StrictModel):
    """View sampling. A preset ``policy`` fills the crops and weights (sslight/config/views.py)."""

    policy: ViewPolicy = "sslight"
    global_crops: CropConfig
    local_crops: CropConfig
    loss_weights: LossWeights

    @field_validator("global_crops")
    @classmethod
    def _two_globals(cls, crops: CropConfig) -> CropConfig:
        if crops.number != 2:
            raise ValueError(
                f"number must be 2 (teacher/key and codes use two globals), got {crops.number}"
            )
        return crops

    @model_validator(mode="after")
    def _locals_fit(self) -> ViewsConfig:
        if self.local_crops.size > self.global_crops.size:
            raise ValueError(
                f"local_crops.size {self.local_crops.size} is larger than "
                f"global_crops.size {self.global_crops.size}"
            )
        if self.local_crops.number == 0 and self.loss_weights.global_local != 0:
            raise ValueError(
                "loss_weights.global_local must be 0 when local_crops.number is 0 "
                "(set loss_weights: {global_global: 1.0, global_local: 0.0})"
            )
        return self


class DataConfig(StrictModel):
    dataset: str = "image_folder"
    root: str | None = None
    image_size: int = Field(default=224, ge=8, le=1024)
    train_subset: int | float | None = None
    val_subset: int | float | None = None
    num_workers: int = Field(default=8, ge=0, le=128)
    download: bool = True
    # where the multi-crop views are made: the loader workers (cpu), the training accelerator
    # (cuda; workers only decode), or auto: the accelerator when training on one
    views_device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        from sslight.data.sources import SOURCES

        if name not in SOURCES:
            raise ValueError(
                f"unknown dataset {name!r}; choose one of: {', '.join(SOURCES.names())}"
            )
        return name

    @field_validator("train_subset", "val_subset")
    @classmethod
    def _subset_size(cls, size: int | float | None) -> int | float | None:
        if size is None:
            return None
        if isinstance(size, float) and not 0 < size <= 1:
            raise ValueError(f"a fraction must be in (0, 1], got {size}")
        if isinstance(size, int) and size < 1:
            raise ValueError(f"a count must be >= 1, got {size}")
        return size


class TrainConfig(StrictModel):
    """Optimisation: lr = base_lr × batch_size / 256, warmup, then cosine to min_lr."""

    epochs: int = Field(default=200, ge=1)
    batch_size: int = Field(default=1024, ge=2)
    optimizer: Literal["lars", "adamw", "sgd"] = "lars"
    base_lr: float = Field(default=0.48, gt=0)
    min_lr: float = Field(default=0.0048, ge=0)
    warmup_epochs: float = Field(default=10, ge=0)
    warmup_start_lr: float = Field(default=0.0, ge=0)  # absolute, not scaled by batch (seed)
    weight_decay: float = Field(default=1e-6, ge=0)
    weight_decay_end: float = Field(default=1e-6, ge=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    clip_grad: float = Field(default=0.0, ge=0)
    joint_probe: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    compile: bool = False  # torch.compile the backbones (minutes to compile; `make bench`)
    deterministic: bool = False
    max_steps_per_epoch: int | None = Field(default=None, ge=1)
    log_every_steps: int = Field(default=10, ge=1)
    checkpoint_every_steps: int = Field(default=0, ge=0)
    progress: bool = True
    stop_on_collapse: bool = False  # end pretraining at the first epoch the monitor flags

    @model_validator(mode="after")
    def _warmup_shorter_than_training(self) -> TrainConfig:
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs {self.warmup_epochs} exceeds epochs {self.epochs}")
        return self


class InitConfig(StrictModel):
    """``weights``: evaluate these weights instead of this run's pretraining (then ``stages`` may
    not contain ``pretrain``). An export, a run directory / ``last.pt``, or a seed ``*.pth.tar``;
    see sslight/weights/init_weights.py."""

    weights: str | None = None


class RunConfigBase(StrictModel):
    method: str = "dino"
    backbone: str = "mobilenet_v2"
    views: ViewsConfig
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output_dir: str
    seed: int = Field(default=0, ge=0)
    stages: list[str] = Field(default_factory=lambda: ["pretrain", "knn", "linear"])
    init: InitConfig = Field(default_factory=InitConfig)

    @field_validator("train")
    @classmethod
    def _views_on_the_training_device(cls, train: TrainConfig, info: ValidationInfo) -> TrainConfig:
        data = info.data.get("data")
        if data is not None and data.views_device == "cuda" and train.device == "cpu":
            raise ValueError(
                "data.views_device cuda needs training on CUDA (train.device cuda or auto), "
                "got train.device cpu"
            )
        return train

    @field_validator("init")
    @classmethod
    def _no_pretrain_with_weights(cls, init: InitConfig, info: ValidationInfo) -> InitConfig:
        if init.weights and "pretrain" in (info.data.get("stages") or []):
            raise ValueError(
                "weights replaces pretraining: remove 'pretrain' from stages "
                "(e.g. stages: [knn, linear])"
            )
        return init

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, stages: list[str], info: ValidationInfo) -> list[str]:
        evaluation = info.data.get("eval") or EvalConfig()
        allowed = stage_names(evaluation.semi.fractions)
        unknown = [stage for stage in stages if stage not in allowed]
        if unknown:
            raise ValueError(f"unknown stage {unknown[0]!r}; choose from: {', '.join(allowed)}")
        if len(set(stages)) != len(stages):
            raise ValueError(f"a stage is listed twice: {stages}")
        return stages

    @field_validator("stages")
    @classmethod
    def _coco_stages_need_feature_maps(cls, stages: list[str], info: ValidationInfo) -> list[str]:
        backbone = info.data.get("backbone")
        coco = [stage for stage in stages if stage in COCO_STAGES]
        if coco and backbone in BACKBONES and BACKBONES.get(backbone).detection is None:
            raise ValueError(
                f"stage {coco[0]!r} needs a CNN backbone ({', '.join(detection_backbones())}), "
                f"got {backbone!r}"
            )
        return stages

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str) -> str:
        from sslight.methods import METHODS

        if name not in METHODS:
            raise ValueError(
                f"unknown method {name!r}; choose one of: {', '.join(METHODS.names())}"
            )
        return name

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        if name not in BACKBONES:
            raise ValueError(
                f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES.names())}"
            )
        return name


def run_config_model() -> type[RunConfigBase]:
    """RunConfig: the common sections + one section per registered method.

    Built on first use, not at import (so this module does not import the methods), and again
    whenever the registered sections change (a method registered for a test is seen)."""
    from sslight.methods import METHODS

    return _run_config_for(tuple((name, METHODS.get(name).config) for name in METHODS.names()))


@functools.cache
def _run_config_for(sections: tuple[tuple[str, type[StrictModel]], ...]) -> type[RunConfigBase]:
    fields: dict[str, Any] = {
        name: (section, Field(default_factory=section)) for name, section in sections
    }
    return create_model("RunConfig", __base__=RunConfigBase, **fields)


def __getattr__(name: str) -> Any:
    """``RunConfig`` stays importable from here: it is ``run_config_model()`` (PEP 562)."""
    if name == "RunConfig":
        return run_config_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
