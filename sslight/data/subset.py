"""Class-stratified, seeded subsets (for small-scale pretraining and semi-supervised splits)."""

from __future__ import annotations

import math
import numbers

import torch


def _subset_size(size: int | float, total: int) -> int:
    if isinstance(size, bool) or not isinstance(size, numbers.Real):
        raise ValueError(f"subset size must be an int or a float fraction, got {size!r}")
    if isinstance(size, numbers.Integral):
        if not 1 <= size <= total:
            raise ValueError(
                f"subset size {size} out of range: must be between 1 and the {total} images"
            )
        return int(size)
    if not 0.0 < size <= 1.0:
        raise ValueError(f"subset fraction {size} out of range: must be in (0, 1]")
    return max(1, math.floor(size * total + 0.5))


def stratified_subset(labels: torch.Tensor, size: int | float, seed: int) -> torch.Tensor:
    """Sorted int64 indices of a class-stratified subset of ``labels``.

    ``size``: an int (number of images) or a float in (0, 1] (fraction). Each class gets its
    proportional share, rounded by largest remainder so the total is exact; the images of a
    class are picked by a permutation seeded with ``seed``.
    """
    labels = torch.as_tensor(labels).reshape(-1)
    total = labels.numel()
    if total == 0:
        raise ValueError("cannot take a subset of an empty label set")
    n = _subset_size(size, total)
    classes, counts = torch.unique(labels, return_counts=True)
    shares = [n * int(c) for c in counts]
    quotas = [s // total for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda k: (-(shares[k] % total), k))
    for k in by_remainder[: n - sum(quotas)]:
        quotas[k] += 1
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for cls, quota in zip(classes.tolist(), quotas, strict=True):
        members = torch.nonzero(labels == cls).reshape(-1)
        order = torch.randperm(len(members), generator=gen)
        chosen.append(members[order[:quota]])
    return torch.sort(torch.cat(chosen)).values.to(torch.int64)
