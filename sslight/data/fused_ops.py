"""The hue rotation of the colour jitter compiled into one loop (``torch.compile``, inductor's C++).

Eager, the hue of :mod:`sslight.data.batch_ops` is about 25 passes over its rows, and on one CPU
core these passes are memory-bound: at ImageNet sizes (224 and 128 px) it was the largest single
cost of a loader worker. Compiled, it reads each pixel once and writes it twice (the result,
then into place), with the same maths in the same order; tests/test_fused_ops.py holds it to
torchvision's. The other jitter ops stay eager: two to six cheap passes that stay in the caches,
where a compiled call's own overhead and fresh output buffer cost more than they save.

Compiling is start-up work: the first time on a machine about 25 s (inductor caches the kernel
under ``/tmp/torchinductor_$USER``), then a few seconds per process. Views smaller than
``MIN_SIZE`` and views on accelerators keep the eager hue; ``TORCHDYNAMO_DISABLE=1`` turns
compilation off everywhere, and a machine where compiling fails falls back to the eager ops with
one warning.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import torch

from sslight.data import batch_ops as ops

MIN_SIZE = 96  # px: the smallest views compiled (DINO's local views; CIFAR's 32 px stay eager)

_eager_only = False  # set when compiling failed on this machine


class FusedOp:
    """``op(x, factor)`` compiled on first call, one graph for any number of rows."""

    def __init__(self, op: Callable[[torch.Tensor, torch.Tensor], None]) -> None:
        self.op = op
        self._compiled: Callable[[torch.Tensor, torch.Tensor], None] | None = None

    def __call__(self, x: torch.Tensor, factor: torch.Tensor) -> None:
        global _eager_only
        if _eager_only:
            return self.op(x, factor)
        factor = factor.contiguous()
        # one graph whatever the row count: no specialised copy for runs of one row
        torch._dynamo.decorators.mark_unbacked(x, 0)
        torch._dynamo.decorators.mark_unbacked(factor, 0)
        try:
            return self._compile()(x, factor)
        except torch._dynamo.exc.TorchDynamoException as error:  # no C++ compiler, ...
            _eager_only = True
            warnings.warn(
                f"compiling the views' colour ops failed ({type(error).__name__}: {error}); "
                "using the eager ops",
                RuntimeWarning,
                stacklevel=2,
            )
            return self.op(x, factor)

    def _compile(self) -> Callable[[torch.Tensor, torch.Tensor], None]:
        if self._compiled is None:
            _configure_inductor()
            self._compiled = torch.compile(self.op, dynamic=True, fullgraph=True)
        return self._compiled

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.op.__name__})"


def _configure_inductor() -> None:
    """In a loader worker, compile in-process (no pool of compiler processes per worker) and
    quiet the CUDA-less notice that inductor's C++ toolchain logs on CPU-only machines."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    if torch.utils.data.get_worker_info() is not None:
        from torch._inductor import config as inductor_config

        inductor_config.compile_threads = 1


# only the hue gains: the other jitter ops are two to six cheap passes that stay in the caches,
# and compiled, each call costs a fresh output buffer and the compiled graph's own overhead
JITTER_OPS = (*ops.JITTER_OPS[:3], FusedOp(ops.adjust_hue_))


def jitter_ops(size: int, device: torch.device) -> tuple[Callable[..., None], ...]:
    """The jitter ops for views of ``size`` px on ``device``: compiled on the CPU from
    ``MIN_SIZE`` up, else the eager ones."""
    if device.type == "cpu" and size >= MIN_SIZE:
        return JITTER_OPS
    return ops.JITTER_OPS
