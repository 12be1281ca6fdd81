"""The ``eval:`` section of the run config: k-NN, linear, semi-supervised and COCO transfer.

Each evaluation's settings, with the seed repo's defaults (docs/architecture.md, "The run config").
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sslight.config.base import StrictModel


class KnnConfig(StrictModel):
    """Weighted k-NN on L2-normalised features (Wu et al. 2018, as in DINO's eval_knn)."""

    k: list[int] = Field(default_factory=lambda: [20, 200])
    temperature: float = Field(default=0.07, gt=0)
    monitor: bool = True
    monitor_k: int = Field(default=20, ge=1)
    monitor_every_epochs: int = Field(default=1, ge=1)


LrSchedule = Literal["epoch", "step"]
"""How the cosine learning rate moves: ``epoch`` holds each epoch at the value of its first step
(the seed's ``cls_trainer.py`` sets it once per epoch), ``step`` moves it every iteration (DINO's
``eval_linear.py``)."""


class LinearEvalConfig(StrictModel):
    """Linear evaluation on the frozen backbone (seed repo: CNN LARS 0.05 × batch/256 = 0.8 at
    4096, 100 epochs, wd 0, cosine to 1e-6 set once per epoch, ``dino_cnn_linear.yaml``; ViT-T
    SGD 0.01 × 1024/256 = 0.04 on the last 4 blocks' CLS, ``dino_vit_linear.yaml``: the DINO ViT
    recipe sets ``batch_size: 1024``)."""

    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=4096, ge=1)
    optimizer: Literal["auto", "lars", "sgd"] = "auto"  # auto: lars for CNNs, sgd for ViTs
    base_lr: float | None = Field(default=None, gt=0)  # None: 0.05 (lars) / 0.01 (sgd)
    min_lr: float = Field(default=1e-6, ge=0)  # the cosine's end (seed MIN_LR)
    lr_schedule: LrSchedule = "epoch"
    weight_decay: float = Field(default=0.0, ge=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    n_last_blocks: int = Field(default=4, ge=1)
    cached_features: bool = False
    max_steps_per_epoch: int | None = Field(default=None, ge=1)


class SemiConfig(StrictModel):
    """Semi-supervised fine-tuning of the whole network on a fraction of the labels (seed repo,
    ``dino_*_semi.yaml``: 1 % for 60 epochs, 10 % for 30, batch 128 × 8 GPUs = 1024, SGD Nesterov
    0.03 × batch/256 = 0.12, cosine to 1e-6 set once per epoch, wd 0, SyncBN). ``head``: ``mlp``
    is the seed's ``Linear(D, 2048)-BN-GELU-Linear(2048, 2048)-BN-GELU-Linear(2048, classes)``
    (``cls_trainer.py``), its first two layers taken from the pretrained projection head where
    the method has a fitting one (DINO); ``linear`` is one ``Linear(D, classes)``. Stage names
    are ``semi_<percent>``; ``split_dir`` holds ImageNet-style ``<percent>percent.txt`` files."""

    fractions: list[float] = Field(default_factory=lambda: [0.01, 0.1])
    epochs: list[int] = Field(default_factory=lambda: [60, 30])
    head: Literal["mlp", "linear"] = "mlp"
    batch_size: int = Field(default=1024, ge=1)
    base_lr: float = Field(default=0.03, gt=0)
    min_lr: float = Field(default=1e-6, ge=0)  # the cosine's end (seed MIN_LR)
    lr_schedule: LrSchedule = "epoch"
    weight_decay: float = Field(default=0.0, ge=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    split_dir: str | None = None
    max_steps_per_epoch: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_epoch_count_per_fraction(self) -> SemiConfig:
        if len(self.epochs) != len(self.fractions):
            raise ValueError(
                f"epochs has {len(self.epochs)} entries for {len(self.fractions)} fractions"
            )
        if any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions must be in (0, 1], got {self.fractions}")
        return self


class DetectionConfig(StrictModel):
    """COCO transfer: Faster R-CNN (stage ``detection``) / Mask R-CNN (``segmentation``) + FPN.

    Defaults are the seed repo's Detectron2 1x schedule: 90k iterations at batch 16, SGD lr 0.02,
    momentum 0.9, wd 1e-4 (0 on norm layers), ×``gamma`` at ``steps``, linear warmup from
    ``warmup_factor`` over 1000 iterations; shorter side 640–800 px (train) / 800 (test), ≤ 1333.
    ``batch_size`` is the global batch, shared out over the ranks of a distributed run.
    BatchNorm trains on the whole batch (in one process, or synchronised over the ranks as the
    seed's SyncBN); ``freeze_bn`` keeps the pretrained statistics and affine
    parameters instead (FrozenBatchNorm2d, standard at a few images per batch). ``data_root``: a
    COCO root (``annotations/instances_<split>.json`` + ``<split>/``), or unset / ``synthetic`` for
    Fashion-MNIST items on ``synthetic_canvas_size`` px canvases (splits ``train``/``val``).
    The RoI heads follow Detectron2 too: ROIAlignV2 pooling (``roi_align_aligned``,
    ``roi_sampling_ratio``) for the box and mask heads, and an L1 box-regression loss
    (``box_smooth_l1_beta`` 0)."""

    data_root: str | None = None
    train_split: str = "train2017"
    val_split: str = "val2017"
    val_images: int | None = Field(default=None, ge=1)  # evaluate on the first N only
    max_iters: int = Field(default=90000, ge=1)
    batch_size: int = Field(default=16, ge=1)
    base_lr: float = Field(default=0.02, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=1e-4, ge=0)
    steps: list[int] = Field(default_factory=lambda: [60000, 80000])
    gamma: float = Field(default=0.1, gt=0, le=1)
    warmup_iters: int = Field(default=1000, ge=0)
    warmup_factor: float = Field(default=0.001, gt=0, le=1)
    min_size_train: list[int] = Field(default_factory=lambda: [640, 672, 704, 736, 768, 800])
    min_size_test: int = Field(default=800, ge=8)
    max_size: int = Field(default=1333, ge=8)
    freeze_bn: bool = False
    rpn_batch_size_per_image: int = Field(default=256, ge=1)
    roi_batch_size_per_image: int = Field(default=512, ge=1)
    rpn_proposals_test: int = Field(default=1000, ge=1)  # per image, after NMS
    detections_per_image: int = Field(default=100, ge=1)
    # Detectron2's POOLER_TYPE ROIAlignV2: half-pixel-aligned RoIAlign (False: torchvision's)
    roi_align_aligned: bool = True
    # Detectron2's POOLER_SAMPLING_RATIO 0: adaptive, ceil(RoI size / output size) points per bin
    roi_sampling_ratio: int = Field(default=0, ge=0)
    # Detectron2's ROI_BOX_HEAD.SMOOTH_L1_BETA 0.0, i.e. L1 (torchvision's fastrcnn_loss: 1/9)
    box_smooth_l1_beta: float = Field(default=0.0, ge=0)
    checkpoint_every_iters: int = Field(default=5000, ge=1)
    synthetic_canvas_size: int = Field(default=128, ge=32, le=1024)
    synthetic_images: tuple[int, int] = (2000, 500)  # train, val

    @model_validator(mode="after")
    def _schedule_fits(self) -> DetectionConfig:
        if any(not 0 < step < self.max_iters for step in self.steps) or self.steps != sorted(
            self.steps
        ):
            raise ValueError(
                f"steps {self.steps} must increase and lie in (0, max_iters={self.max_iters}); "
                f"set steps with max_iters (1x: [60000, 80000] of 90000)"
            )
        if self.warmup_iters > self.max_iters:
            raise ValueError(f"warmup_iters {self.warmup_iters} exceeds max_iters {self.max_iters}")
        return self


class EvalConfig(StrictModel):
    """``network``: which of the method's networks every evaluation stage and the export take.
    ``student`` (the default) is what the seed evaluates: DINO's student
    (``load_pretrained_models.py``, also its training-time k-NN), MoCo's query encoder, SwAV's
    only network; ``teacher`` is DINO's EMA teacher or MoCo's key encoder."""

    network: Literal["student", "teacher"] = "student"
    knn: KnnConfig = Field(default_factory=KnnConfig)
    linear: LinearEvalConfig = Field(default_factory=LinearEvalConfig)
    semi: SemiConfig = Field(default_factory=SemiConfig)
    # k-NN and linear also score a random-init backbone and raw pixels (evaluation/floors.py)
    floors: bool = True
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
