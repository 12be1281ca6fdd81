"""View-sampling presets (SSLight, Tan et al. ICLR 2023, Sec. 4 and the seed repo's configs).

A method declares its ``baseline`` views per backbone family at 224 px; ``sslight`` keeps the
number of crops and changes exactly four things: global scale (0.3, 1), local size 128, local scale
(0.05, 0.3) and the loss weights (0.4, 0.6). Crop sizes are scaled by ``image_size / 224`` and, for
ViTs, rounded to a multiple of the patch size.
"""

from __future__ import annotations

import math
from typing import Any

REFERENCE_SIZE = 224

# The seed repo's CNN baseline crops at 224 px, the same for DINO, SwAV and MoCo: globals at
# (0.14, 1), six 96 px locals at (0.05, 0.14). Each method adds its loss weights.
CNN_BASELINE_CROPS: dict[str, Any] = {
    "global_scale": (0.14, 1.0),
    "local_number": 6,
    "local_size": 96,
    "local_scale": (0.05, 0.14),
}

SSLIGHT_CHANGES: dict[str, Any] = {
    "global_scale": (0.3, 1.0),
    "local_size": 128,
    "local_scale": (0.05, 0.3),
    "loss_weights": (0.4, 0.6),
}


def scale_crop_size(size_at_224: int, image_size: int, patch_size: int | None) -> int:
    """The crop size at ``image_size`` matching ``size_at_224`` at the paper's 224 px."""
    size = size_at_224 * image_size / REFERENCE_SIZE
    if patch_size:  # round half up (not to even), never below one patch
        return max(patch_size, patch_size * math.floor(size / patch_size + 0.5))
    return max(1, math.floor(size + 0.5))


def preset_views(
    baseline: dict[str, Any], policy: str, image_size: int, patch_size: int | None
) -> dict[str, Any]:
    """The ``views`` section of a preset policy, as plain data ready for validation.

    ``baseline`` holds the 224 px baseline geometry: global_scale, local_number, local_size,
    local_scale and loss_weights (gg, gl).
    """
    geometry = dict(baseline)
    if policy == "sslight":
        geometry.update(SSLIGHT_CHANGES)
    elif policy != "baseline":
        raise ValueError(f"no preset for view policy {policy!r}")
    w_gg, w_gl = geometry["loss_weights"]
    return {
        "policy": policy,
        "global_crops": {
            "number": 2,
            "size": scale_crop_size(REFERENCE_SIZE, image_size, patch_size),
            "scale": list(geometry["global_scale"]),
        },
        "local_crops": {
            "number": geometry["local_number"],
            "size": scale_crop_size(geometry["local_size"], image_size, patch_size),
            "scale": list(geometry["local_scale"]),
        },
        "loss_weights": {"global_global": w_gg, "global_local": w_gl},
    }
