"""Frozen-backbone features for linear evaluation (DINO ``eval_linear.py``).

CNNs use their pooled output. ViTs use the concatenated CLS tokens of the last ``n_last_blocks``
blocks, each passed through the final norm (DINO's ``get_intermediate_layers``; 4 blocks for
ViT-Tiny/Small), so a ViT-Tiny gives 4 × 192 = 768 features.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.data import DataLoader


class FeatureExtractor(nn.Module):
    """``[B, 3, H, W] -> [B, out_dim]`` features of ``backbone`` (a library backbone)."""

    def __init__(self, backbone: nn.Module, n_last_blocks: int = 4) -> None:
        super().__init__()
        self.backbone = backbone
        self.family = backbone.family
        if self.family == "vit":
            depth = len(backbone.blocks)
            if not 1 <= n_last_blocks <= depth:
                raise ValueError(
                    f"n_last_blocks must be between 1 and the {depth} blocks of "
                    f"{backbone.name}, got {n_last_blocks}"
                )
            self.n_last_blocks = n_last_blocks
            self.out_dim = n_last_blocks * backbone.embed_dim
        else:
            self.n_last_blocks = 0
            self.out_dim = backbone.embed_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.family != "vit":
            return self.backbone(images)
        blocks = self.backbone.get_intermediate_layers(
            images, n=self.n_last_blocks, return_prefix_tokens=True, norm=True
        )
        return torch.cat([prefix[:, 0] for _, prefix in blocks], dim=-1)


def amp_context(
    device: torch.device, amp_dtype: torch.dtype | None
) -> contextlib.AbstractContextManager:
    """Autocast to ``amp_dtype`` on ``device``, or nothing when it is None."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)


@torch.no_grad()
def extract(
    extractor: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 features (on the CPU) and labels of every batch of ``loader``, in eval mode."""
    was_training = extractor.training
    extractor.eval()
    features, labels = [], []
    try:
        for images, targets in loader:
            with amp_context(device, amp_dtype):
                out = extractor(images.to(device, non_blocking=True))
            features.append(out.float().cpu())
            labels.append(targets)
    finally:
        extractor.train(was_training)
    return torch.cat(features), torch.cat(labels)
