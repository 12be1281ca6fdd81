"""The same DINO training step with the ``lightly`` library, interleaved with ours.

Both sides: the same torchvision backbone, crops (2 globals + 6 locals, SSLight scales), batch,
DINO augmentations (lightly's ``DINOTransform`` defaults are DINO's: jitter 0.4/0.4/0.2/0.1,
blur 1.0/0.1/0.5, solarize 0.2 on global 2), head 2048 → 256 → 4096 with BatchNorm and a
weight-normalised last layer, LARS with the same parameter groups, the same data-loading
processes. The lightly side is lightly's own DINO example (examples/pytorch/dino.py):
``DINOProjectionHead``, ``DINOLoss``, ``update_momentum`` on backbone and head, one forward per
view. Ours is sslight's: crops batched per resolution, channels_last where it wins, a foreach EMA.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import (
    GEOMETRIES,
    fashion_images,
    loader_workers,
    set_threads,
    versus_lightly,
)
from benchmarks.train_step import BATCH, TrainStep, bench_config, our_loader, throughput
from sslight.engine.optim import build_optimizer, set_lr_and_weight_decay
from sslight.models import build_backbone

BACKBONES = ("mobilenet_v2", "resnet18")
TARGET = 1.5  # ours ≥ 1.5× lightly's images/s
OUT_DIM, HIDDEN_DIM, BOTTLENECK_DIM = 4096, 2048, 256
EPOCH = 1  # past the first epoch: the last head layer is trained on both sides


class PILDataset(Dataset):
    """``(transform(PIL image), label)``: how lightly's examples feed ``DINOTransform``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Any) -> None:
        from PIL import Image

        self.images = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[list[torch.Tensor], int]:
        return self.transform(self.images[i]), self.labels[i]


class LightlyDINO(nn.Module):
    """lightly's DINO example model: student and EMA teacher, each backbone + DINO head."""

    def __init__(self, backbone: nn.Module, input_dim: int) -> None:
        from lightly.models.modules import DINOProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        super().__init__()

        def head(freeze_last_layer: int) -> nn.Module:
            return DINOProjectionHead(
                input_dim,
                HIDDEN_DIM,
                BOTTLENECK_DIM,
                OUT_DIM,
                batch_norm=True,
                freeze_last_layer=freeze_last_layer,
            )

        self.student_backbone = backbone
        self.student_head = head(freeze_last_layer=1)
        self.teacher_backbone = copy.deepcopy(backbone)
        self.teacher_head = head(freeze_last_layer=-1)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student_head(self.student_backbone(x).flatten(start_dim=1))

    def forward_teacher(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher_head(self.teacher_backbone(x).flatten(start_dim=1))


class LightlyStep:
    """One iteration of lightly's DINO example loop, with our LARS and parameter groups."""

    def __init__(self, backbone_name: str, device: torch.device, momentum: float = 0.996) -> None:
        from lightly.loss import DINOLoss

        backbone = build_backbone(backbone_name)
        self.model = LightlyDINO(backbone, backbone.embed_dim).to(device)
        self.criterion = DINOLoss(
            output_dim=OUT_DIM, warmup_teacher_temp_epochs=50, teacher_temp=0.07
        ).to(device)
        student = [self.model.student_backbone, self.model.student_head]
        self.optimizer = build_optimizer("lars", student)
        set_lr_and_weight_decay(self.optimizer, 1e-3, 1e-6)
        self.device, self.momentum = device, momentum

    def __call__(self, views: list[torch.Tensor], labels: torch.Tensor) -> float:
        from lightly.models.utils import update_momentum

        model = self.model
        update_momentum(model.student_backbone, model.teacher_backbone, m=self.momentum)
        update_momentum(model.student_head, model.teacher_head, m=self.momentum)
        views = [view.to(self.device, non_blocking=True) for view in views]
        teacher_out = [model.forward_teacher(view) for view in views[:2]]
        student_out = [model.forward(view) for view in views]
        loss = self.criterion(teacher_out, student_out, epoch=EPOCH)
        loss.backward()
        model.student_head.cancel_last_layer_gradients(current_epoch=EPOCH)
        self.optimizer.step()
        self.optimizer.zero_grad()
        return float(loss.detach())


def lightly_transform(geometry: Any) -> Any:
    from lightly.transforms import DINOTransform

    return DINOTransform(
        global_crop_size=geometry.global_size,
        global_crop_scale=geometry.global_scale,
        local_crop_size=geometry.local_size,
        local_crop_scale=geometry.local_scale,
        n_local_views=geometry.local_number,
    )


def compare(
    backbone: str, geometry: str, *, quick: bool, threads: int, device: str = "cpu"
) -> dict[str, Any]:
    """Interleaved rounds of our step and lightly's (fresh loader workers every round)."""
    geo = GEOMETRIES[geometry]
    batch = 4 if quick else BATCH[geometry]
    rounds, steps = (1, 1) if quick else ROUNDS[geometry]
    workers = 0 if quick else loader_workers(threads)
    images, labels = fashion_images(batch * (steps + 1), geo.global_size)
    cfg = bench_config("dino", backbone, geo, batch, device=device, joint_probe=False)
    ours = TrainStep(cfg)
    ours_loader = our_loader(cfg, images, labels, workers, persistent=False)
    theirs = LightlyStep(backbone, ours.rt.device)
    theirs_loader = DataLoader(
        PILDataset(images, labels, lightly_transform(geo)),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=device == "cuda",
        generator=torch.Generator().manual_seed(0),
    )
    dev = ours.rt.device
    return versus_lightly(
        lambda: throughput(ours, ours_loader, 1, steps, dev),
        lambda: throughput(theirs, theirs_loader, 1, steps, dev),
        rounds,
        TARGET,
        unit="images/s",
        batch_size=batch,
    )


ROUNDS = {"32px": (5, 2), "96px": (5, 2)}  # (interleaved rounds, timed steps per round)


def run(quick: bool = False, threads: int | None = None) -> dict[str, Any]:
    threads = set_threads(threads)
    cells = [("mobilenet_v2", "32px")] if quick else [(b, g) for g in GEOMETRIES for b in BACKBONES]
    return {
        f"train_step_vs_lightly/dino_{backbone}_{geometry}": compare(
            backbone, geometry, quick=quick, threads=threads
        )
        for backbone, geometry in cells
    }
