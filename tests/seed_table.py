"""The seed repo's numbers at 224 px, as test data: view settings and recipe defaults per
(method, backbone family), as recorded in docs/architecture.md ("What the seed repo does").

A method registered later must add its rows: the preset tests (tests/test_config.py) fail until
it does. Views are ``(global scale, local number, local size, local scale, (w_gg, w_gl))`` per
(method, family, policy); SwAV and MoCo baselines weigh the 7 terms per global uniformly: 1/7,
6/7. Recipes are dotted keys of the resolved config.
"""

from typing import Any

SEED_VIEWS: dict[tuple[str, str, str], tuple[Any, ...]] = {
    ("dino", "cnn", "baseline"): ((0.14, 1.0), 6, 96, (0.05, 0.14), (2 / 14, 12 / 14)),
    ("dino", "cnn", "sslight"): ((0.3, 1.0), 6, 128, (0.05, 0.3), (0.4, 0.6)),
    ("dino", "vit", "baseline"): ((0.25, 1.0), 10, 96, (0.05, 0.25), (2 / 22, 20 / 22)),
    ("dino", "vit", "sslight"): ((0.3, 1.0), 10, 128, (0.05, 0.3), (0.4, 0.6)),
    ("swav", "cnn", "baseline"): ((0.14, 1.0), 6, 96, (0.05, 0.14), (1 / 7, 6 / 7)),
    ("swav", "cnn", "sslight"): ((0.3, 1.0), 6, 128, (0.05, 0.3), (0.4, 0.6)),
    ("moco", "cnn", "baseline"): ((0.14, 1.0), 6, 96, (0.05, 0.14), (1 / 7, 6 / 7)),
    ("moco", "cnn", "sslight"): ((0.3, 1.0), 6, 128, (0.05, 0.3), (0.4, 0.6)),
}

# Shared by every seed config: 200 epochs, 1024 batch, 10 warmup epochs, no clipping.
SEED_COMMON = {
    "train.epochs": 200,
    "train.batch_size": 1024,
    "train.warmup_epochs": 10,
    "train.clip_grad": 0.0,
}
# The seed trained in fp32 (USE_FP16: False); presets default to `auto` (bf16 on a GPU), and the
# paper grids pin fp32: tests/test_grid.py checks that per cell.

DINO_SHARED = {
    "dino.hidden_dim": 2048,
    "dino.bottleneck_dim": 256,
    "dino.momentum_teacher": 0.996,
    "dino.momentum_teacher_end": 1.0,
    "dino.warmup_teacher_temp": 0.04,
    "dino.teacher_temp": 0.07,
    "dino.student_temp": 0.1,
    "dino.center_momentum": 0.9,
    "dino.freeze_last_layer_epochs": 1,
}

# Recipe defaults per (method, family), as dotted keys of the resolved config.
SEED_RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    ("dino", "cnn"): {
        **DINO_SHARED,
        "train.optimizer": "lars",
        "train.base_lr": 0.48,
        "train.min_lr": 0.0048,
        "train.weight_decay": 1e-6,
        "train.weight_decay_end": 1e-6,
        "train.momentum": 0.9,
        "dino.out_dim": 4096,
        "dino.use_bn_in_head": True,
        "dino.norm_last_layer": True,
        "dino.warmup_teacher_temp_epochs": 50,
    },
    ("dino", "vit"): {
        **DINO_SHARED,
        "train.optimizer": "adamw",
        "train.base_lr": 5e-4,
        "train.min_lr": 1e-5,
        "train.weight_decay": 0.04,
        "train.weight_decay_end": 0.4,
        "dino.out_dim": 65536,
        "dino.use_bn_in_head": False,
        "dino.norm_last_layer": False,
        "dino.warmup_teacher_temp_epochs": 30,
        "dino.drop_path_rate": 0.1,
    },
    ("swav", "cnn"): {"train.optimizer": "lars", "train.base_lr": 0.3, "train.min_lr": 0.0048},
    ("moco", "cnn"): {"train.optimizer": "lars", "train.base_lr": 0.48},
}


def views_of(cfg: Any) -> tuple[Any, ...]:
    """A resolved config's views in the form of ``SEED_VIEWS``."""
    v = cfg.model_dump(mode="json")["views"]
    return (
        tuple(v["global_crops"]["scale"]),
        v["local_crops"]["number"],
        v["local_crops"]["size"],
        tuple(v["local_crops"]["scale"]),
        (v["loss_weights"]["global_global"], v["loss_weights"]["global_local"]),
    )
