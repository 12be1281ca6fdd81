"""DINO (Caron et al., ICCV 2021) with SSLight's weighted global/local loss (Tan et al., ICLR 2023).

The teacher is an EMA of the student (momentum cosine 0.996 → 1 per iteration), sees the two
global crops and is centred and sharpened; the student sees every crop. The last head layer is
frozen during the first epoch. Defaults reproduce the seed repo's CNN and ViT-Tiny configs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field

from sslight.config.base import StrictModel
from sslight.config.views import CNN_BASELINE_CROPS
from sslight.engine.schedules import epoch_warmup_schedule
from sslight.methods.base import (
    EvalNetwork,
    MethodSpec,
    MethodStep,
    Network,
    StepContext,
    seed_lars,
)
from sslight.methods.dino_loss import DINOLoss
from sslight.methods.momentum import MomentumMethod
from sslight.models import DINOHead, build_backbone, forward_multicrop


class DinoConfig(StrictModel):
    """The ``dino:`` section. Defaults: the seed repo's CNN config (ViT values in DEFAULTS)."""

    out_dim: int = Field(default=4096, ge=2)
    hidden_dim: int = Field(default=2048, ge=1)
    bottleneck_dim: int = Field(default=256, ge=1)
    use_bn_in_head: bool = True
    norm_last_layer: bool = True
    momentum_teacher: float = Field(default=0.996, ge=0, le=1)
    momentum_teacher_end: float = Field(default=1.0, ge=0, le=1)
    warmup_teacher_temp: float = Field(default=0.04, gt=0)
    teacher_temp: float = Field(default=0.07, gt=0)
    warmup_teacher_temp_epochs: int = Field(default=50, ge=0)
    student_temp: float = Field(default=0.1, gt=0)
    center_momentum: float = Field(default=0.9, ge=0, le=1)
    freeze_last_layer_epochs: int = Field(default=1, ge=0)
    drop_path_rate: float = Field(default=0.0, ge=0, lt=1)


class DINO(MomentumMethod):
    def __init__(self, cfg: Any, num_classes: int) -> None:
        args: DinoConfig = cfg.dino
        student_backbone = build_backbone(cfg.backbone, drop_path_rate=args.drop_path_rate)
        super().__init__(cfg, student_backbone, num_classes)
        self.args = args

        def head() -> DINOHead:
            return DINOHead(
                student_backbone.embed_dim,
                args.out_dim,
                use_bn=args.use_bn_in_head,
                norm_last_layer=args.norm_last_layer,
                hidden_dim=args.hidden_dim,
                bottleneck_dim=args.bottleneck_dim,
            )

        self.student = Network(student_backbone, head())
        # The teacher has no drop-path (as in DINO); it starts equal to the student.
        self.teacher = Network(build_backbone(cfg.backbone), head())
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)
        self.criterion = DINOLoss(
            args.out_dim, self.n_global, args.student_temp, args.center_momentum
        )
        self.teacher_temp = torch.empty(0)

    def momentum_target(self) -> Network:
        return self.teacher

    def momentum_range(self) -> tuple[float, float]:
        return self.args.momentum_teacher, self.args.momentum_teacher_end

    def setup(self, epochs: int, steps_per_epoch: int) -> None:
        super().setup(epochs, steps_per_epoch)
        a = self.args
        self.teacher_temp = epoch_warmup_schedule(
            a.warmup_teacher_temp, a.teacher_temp, a.warmup_teacher_temp_epochs, epochs
        )

    def ssl_step(self, views: list[torch.Tensor], ctx: StepContext) -> MethodStep:
        features = forward_multicrop(self.student.backbone, views, channels_last=self.channels_last)
        student_out = self.student.head(features)
        with torch.no_grad():
            teacher_features = forward_multicrop(
                self.teacher.backbone, views[: self.n_global], channels_last=self.channels_last
            )
            teacher_out = self.teacher.head(teacher_features)
        temp = float(self.teacher_temp[ctx.epoch])
        loss, parts = self.criterion(student_out, teacher_out, temp, self.loss_weights)
        logs = {**{k: v.item() for k, v in parts.items()}, "teacher_temp": temp}
        return MethodStep(loss, logs, features)

    def before_optimizer_step(self, ctx: StepContext) -> None:
        if ctx.epoch < self.args.freeze_last_layer_epochs:
            for param in self.student.head.last_layer.parameters():
                param.grad = None

    def collapse_reference(self) -> dict[str, float]:
        """A uniform teacher output has entropy ln K, and the loss is then ln K too."""
        ln_k = math.log(self.args.out_dim)
        return {"entropy_max": ln_k, "collapse_loss": ln_k}

    def extra_state(self) -> dict[str, Any]:
        return {"teacher": self.teacher.state_dict(), "center": self.criterion.center.clone()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.teacher.load_state_dict(state["teacher"])
        self.criterion.center.copy_(state["center"])


# Seed repo baselines at 224 px; the 'sslight' policy is derived in sslight/config/views.py.
BASELINE_VIEWS = {
    "cnn": {**CNN_BASELINE_CROPS, "loss_weights": (2 / 14, 12 / 14)},
    "vit": {
        "global_scale": (0.25, 1.0),
        "local_number": 10,
        "local_size": 96,
        "local_scale": (0.05, 0.25),
        "loss_weights": (2 / 22, 20 / 22),
    },
}

DEFAULTS = {
    "cnn": {"train": seed_lars(0.48)},
    "vit": {
        "train": {
            "optimizer": "adamw",
            "base_lr": 5e-4,
            "min_lr": 1e-5,
            "weight_decay": 0.04,
            "weight_decay_end": 0.4,
        },
        "dino": {
            "out_dim": 65536,
            "use_bn_in_head": False,
            "norm_last_layer": False,
            "warmup_teacher_temp_epochs": 30,
            "drop_path_rate": 0.1,
        },
        # dino_vit_linear.yaml: 128 × 8 GPUs, lr 0.01 × 1024/256 = 0.04 (CNNs: 4096 and 0.8)
        "eval": {"linear": {"batch_size": 1024}},
    },
}

SPEC = MethodSpec(
    name="dino",
    config=DinoConfig,
    build=DINO,
    augmentation="dino",
    defaults=DEFAULTS,
    baseline_views=BASELINE_VIEWS,
    # The seed evaluates the student (classification/utils/load_pretrained_models.py, its
    # training-time k-NN); the EMA teacher, which Caron et al. 2021 (Sec. 3.1) evaluate, on demand.
    networks={
        "student": EvalNetwork("student", "student", "module.student."),
        "teacher": EvalNetwork("teacher", "teacher", "module.teacher."),
    },
    seed_prefixes={
        "cnn": ("module.student.backbone.encoder.", True),
        "vit": ("module.student.backbone.", False),
    },
    # classification/utils/load_pretrained_models.py keeps head.mlp.0/.1/.3/.4 for semi
    semi_head_from_pretrained=True,
)
