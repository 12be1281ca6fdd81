"""Multi-crop forward (Caron et al., 2020 SwAV; 2021 DINO ``MultiCropWrapper``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def resolution_groups(views: list[Tensor]) -> list[tuple[int, int]]:
    """Half-open ``[start, end)`` index ranges of consecutive views sharing the same ``(H, W)``."""
    groups: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(views) + 1):
        if i == len(views) or views[i].shape[-2:] != views[start].shape[-2:]:
            groups.append((start, i))
            start = i
    return groups


def forward_multicrop(
    backbone: nn.Module, views: list[Tensor], *, channels_last: bool = False
) -> Tensor:
    """Run ``backbone`` on every view, one forward per run of same-resolution views.

    As DINO's ``MultiCropWrapper``: consecutive views of equal size are concatenated along the
    batch, so 2 globals + 6 locals cost two forwards. Returns ``[sum of batch sizes, D]`` in view
    order. ``channels_last`` converts the inputs only; convert the model yourself
    (``model.to(memory_format=torch.channels_last)``) for the full speed-up.
    """
    if not views:
        raise ValueError("forward_multicrop needs at least one view")
    outputs = []
    for start, end in resolution_groups(views):
        batch = torch.cat(views[start:end]) if end - start > 1 else views[start]
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        outputs.append(backbone(batch))
    return torch.cat(outputs) if len(outputs) > 1 else outputs[0]
