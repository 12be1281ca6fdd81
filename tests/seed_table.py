"""The seed repo's view settings at 224 px (DESIGN.md, "What the seed repo does"), as test data.

(global scale, local number, local size, local scale, (w_gg, w_gl)) per (method, family, policy).
SwAV and MoCo baselines weigh the 7 terms per global uniformly: 1/7, 6/7.
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
