"""Weighted k-NN classification on frozen features (Wu et al. 2018; DINO's ``eval_knn.py``).

Features are L2-normalised; each of the k nearest training samples votes for its class with
weight exp(cosine / T).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader


@torch.no_grad()
def extract_features(
    backbone: nn.Module, loader: DataLoader, device: torch.device, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised features and labels of every sample of ``loader`` (model in eval mode)."""
    was_training = backbone.training
    backbone.eval()
    feats, labels = [], []
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for images, targets in loader:
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        feats.append(F.normalize(backbone(images).float(), dim=1).cpu())
        labels.append(targets)
    backbone.train(was_training)
    return torch.cat(feats), torch.cat(labels)


@torch.no_grad()
def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    ks: list[int],
    temperature: float = 0.07,
    chunk: int = 512,
) -> dict[int, float]:
    """Top-1 accuracy (%) for each k."""
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    kmax = min(max(ks), train_features.shape[0])
    correct = dict.fromkeys(ks, 0)
    for start in range(0, test_features.shape[0], chunk):
        query = test_features[start : start + chunk]
        target = test_labels[start : start + chunk]
        sims, idx = (query @ train_features.T).topk(kmax, dim=1)
        neighbours = train_labels[idx]
        weights = (sims / temperature).exp()
        for k in ks:
            kk = min(k, kmax)
            votes = torch.zeros(query.shape[0], num_classes)
            votes.scatter_add_(1, neighbours[:, :kk], weights[:, :kk])
            correct[k] += int((votes.argmax(dim=1) == target).sum())
    total = test_features.shape[0]
    return {k: 100.0 * correct[k] / total for k in ks}
