"""Batch norm over the global batch on CPUs, where PyTorch's ``SyncBatchNorm`` has no kernel.

In training mode each rank sums its activations and their squares per channel and the sums are
all-reduced with autograd (``torch.distributed.nn.functional.all_reduce``, whose backward
all-reduces the gradients), so the statistics, the running averages and the gradients are those of
one process normalising the whole batch: what ``SyncBatchNorm`` computes on GPUs (Ioffe & Szegedy
2015 over the global batch). The sums are taken in float64, as the variance is E[x²] - E[x]².
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.nn.functional import all_reduce


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are those of the batch over all ranks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        channels = x.shape[1]
        dims = (0, *range(2, x.dim()))  # every dimension but the channels
        shape = (1, channels, *([1] * (x.dim() - 2)))
        wide = x.double()
        local = torch.cat(
            [
                wide.sum(dim=dims),
                (wide * wide).sum(dim=dims),
                wide.new_full((1,), x.numel() / channels),
            ]
        )
        total = all_reduce(local)
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels : 2 * channels] / count - mean * mean).clamp_min(0)
        if self.track_running_stats:
            unbiased = var.detach() * count / (count - 1).clamp_min(1)
            self._update_running_stats(mean.detach(), unbiased)
        inverse_std = torch.rsqrt(var + self.eps).to(x.dtype)
        out = (x - mean.to(x.dtype).view(shape)) * inverse_std.view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked += 1
        factor = self.momentum if self.momentum is not None else 1 / int(self.num_batches_tracked)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), factor)


class CpuSyncBatchNorm1d(CpuSyncBatchNorm):
    """The same over ``(N, C)`` or ``(N, C, L)`` inputs (an MLP head's ``BatchNorm1d``)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        nn.BatchNorm1d._check_input_dim(self, x)


def convert_cpu_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` / ``BatchNorm1d`` inside ``module`` (in place; returned) by a
    ``CpuSyncBatchNorm`` / ``CpuSyncBatchNorm1d`` with its parameters, statistics and settings;
    the state-dict keys stay."""
    kinds = {nn.BatchNorm2d: CpuSyncBatchNorm, nn.BatchNorm1d: CpuSyncBatchNorm1d}
    kind = kinds.get(type(module))
    if kind is not None:
        synced = kind(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        synced.load_state_dict(module.state_dict())
        if module.affine:
            synced.weight.requires_grad_(module.weight.requires_grad)
            synced.bias.requires_grad_(module.bias.requires_grad)
        synced.train(module.training)
        return synced.to(next(iter(module.state_dict().values())).device)
    for name, child in module.named_children():
        setattr(module, name, convert_cpu_sync_batchnorm(child))
    return module
