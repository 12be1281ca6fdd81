"""The compiled colour jitter: the hue rotation compiled into one loop equals torchvision's, the
ImageNet-sized views made with it equal the eager views, and a machine that cannot compile gets
the eager ops with a warning instead of an error."""

from __future__ import annotations

import pytest
import torch
from torch._inductor import config as inductor_config
from torchvision.transforms.v2 import functional as F

from sslight.data import batch_ops as ops
from sslight.data import fused_ops
from sslight.data.batch_views import BatchedMultiCrop, ViewSpec


def _smooth_images(count: int, size: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    coarse = torch.rand(count, 3, 6, 6, generator=gen) * 255
    resized = F.resize(coarse, [size, size + 13], antialias=True)
    return list(resized.round().clamp(0, 255).to(torch.uint8))


def test_compiled_hue_equals_torchvision_for_any_row_count():
    hue = fused_ops.JITTER_OPS[3]
    assert isinstance(hue, fused_ops.FusedOp)
    for rows in (1, 5):
        x = torch.rand(rows, 3, 12, 14)
        x[0, :, :2] = 0.5  # grey pixels: no hue
        factors = torch.linspace(-0.5, 0.5, rows)
        y = x.clone()
        hue(y, factors)
        expected = torch.stack([F.adjust_hue(x[i], float(factors[i])) for i in range(rows)])
        torch.testing.assert_close(y, expected, atol=2e-6, rtol=0)


def test_views_from_the_smallest_compiled_size_up_equal_the_eager_views(monkeypatch):
    cpu = torch.device("cpu")
    assert fused_ops.jitter_ops(fused_ops.MIN_SIZE, cpu) is fused_ops.JITTER_OPS
    assert fused_ops.jitter_ops(fused_ops.MIN_SIZE - 1, cpu) is ops.JITTER_OPS
    assert fused_ops.jitter_ops(224, torch.device("cuda")) is ops.JITTER_OPS
    specs = [ViewSpec(96, (0.3, 1.0), (0.4, 0.4, 0.2, 0.1)) for _ in range(2)]
    transform, images, seeds = BatchedMultiCrop(specs), _smooth_images(6, 120), range(6)
    assert transform.draw(seeds, [120] * 6, [133] * 6).jitter.any()
    compiled = transform.uint8_views(images, seeds)
    monkeypatch.setattr(fused_ops, "MIN_SIZE", 10**6)  # every size eager
    eager = transform.uint8_views(images, seeds)
    for ours, reference in zip(compiled, eager, strict=True):
        # float rounding may tip a value at a uint8 rounding boundary, one level
        levels = (ours.int() - reference.int()).abs()
        assert levels.max() <= 1 and (levels == 0).float().mean() > 0.999


def test_a_machine_that_cannot_compile_gets_the_eager_ops(monkeypatch):
    def rotate_hue_(x: torch.Tensor, factor: torch.Tensor) -> None:  # a fresh function: no cache
        ops.adjust_hue_(x, factor)

    monkeypatch.setattr(inductor_config.cpp, "cxx", (None, "/nonexistent/g++"))
    monkeypatch.setattr(inductor_config, "force_disable_caches", True)
    monkeypatch.setattr(fused_ops, "_eager_only", False)
    x, factors = torch.rand(2, 3, 8, 8), torch.tensor([0.1, -0.2])
    fused, expected = fused_ops.FusedOp(rotate_hue_), x.clone()
    ops.adjust_hue_(expected, factors)
    with pytest.warns(RuntimeWarning, match="using the eager ops"):
        fused(x, factors)
    assert fused_ops._eager_only
    torch.testing.assert_close(x, expected, atol=0, rtol=0)
