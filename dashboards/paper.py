"""The numbers SSLight reports, to print beside measured ones.

Source: Tan, Saleh, Martinez, *Effective Self-supervised Pre-training on Low-compute Networks
without Distillation*, ICLR 2023 — its ImageNet linear-evaluation table (200 epochs of
pretraining) and its transfer table for DINO (semi-supervised fine-tuning on 1 % / 10 % of the
ImageNet labels; COCO 2017 Mask R-CNN + FPN 1x box and mask AP), both repeated in the README
tables of the paper's repository. Each entry is ``(baseline, SSLight)``, keyed by
``(method, backbone)`` with this project's names.
"""

from __future__ import annotations

Pair = tuple[float, float]
Reported = dict[tuple[str, str], Pair]

DATASET = "ImageNet"  # what the reported numbers were measured on (COCO for AP)

LINEAR_TOP1: Reported = {
    ("dino", "vit_tiny"): (66.7, 69.5),
    ("dino", "resnet18"): (62.2, 65.7),
    ("dino", "resnet34"): (67.7, 69.7),
    ("dino", "mobilenet_v2"): (66.2, 68.3),
    ("swav", "mobilenet_v2"): (65.2, 67.3),
    ("moco", "mobilenet_v2"): (60.6, 61.6),
}

SEMI_1_TOP1: Reported = {
    ("dino", "resnet18"): (44.5, 49.8),
    ("dino", "resnet34"): (52.4, 55.2),
    ("dino", "mobilenet_v2"): (47.9, 50.6),
}

SEMI_10_TOP1: Reported = {
    ("dino", "resnet18"): (59.2, 63.0),
    ("dino", "resnet34"): (65.4, 67.2),
    ("dino", "mobilenet_v2"): (61.3, 63.5),
}

COCO_BOX_AP: Reported = {
    ("dino", "resnet18"): (32.7, 34.1),
    ("dino", "resnet34"): (37.6, 38.6),
    ("dino", "mobilenet_v2"): (30.9, 32.1),
}

COCO_MASK_AP: Reported = {
    ("dino", "resnet18"): (30.6, 31.8),
    ("dino", "resnet34"): (34.6, 35.5),
    ("dino", "mobilenet_v2"): (28.1, 29.1),
}
