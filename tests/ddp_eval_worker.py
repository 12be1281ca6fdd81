"""A data-parallel ``sslight run`` for the tests, every stage of a config on every rank (rank 0
writes the run directory): ``__main__`` is launched by torchrun (gloo on the CPU), ``run_rank`` is
a SLURM task of a multi-task submitit job."""

from __future__ import annotations

import sys
from typing import Any

import torch

import sslight


def run_rank(config: dict) -> dict[str, Any]:
    """Rendezvous through submitit's TorchDistributedEnvironment, then run; rank 0 returns the
    whole result.json, the other ranks an empty dict."""
    import submitit

    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    torch.set_num_threads(1)
    return sslight.run(sslight.resolve(config, source="ddp task"))


if __name__ == "__main__":
    from sslight.config.load import load_config

    torch.set_num_threads(1)
    sslight.run(load_config(sys.argv[1]))
