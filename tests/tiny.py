"""A tiny DINO run on synthetic 32 px images (seconds on a CPU): the shared core, and the whole
run the grid and executor tests submit."""

from sslight.config.load import deep_merge

TINY_CORE = {
    "method": "dino",
    "backbone": "resnet18",
    "data": {"dataset": "synthetic", "image_size": 32, "num_workers": 0},
    "views": {"local_crops": {"number": 2}},
    "train": {
        "epochs": 1,
        "batch_size": 8,
        "max_steps_per_epoch": 2,
        "warmup_epochs": 0,
        "progress": False,
    },
    "dino": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16},
}
TINY_RUN = deep_merge(
    TINY_CORE, {"eval": {"knn": {"monitor": False}}, "stages": ["pretrain", "knn"]}
)
