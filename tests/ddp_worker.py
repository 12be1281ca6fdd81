"""Launched by torchrun from tests/test_distributed.py: pretrain, then save this rank's weights."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from sslight.config.load import load_config
from sslight.engine import trainer


def main(config: str, out: str) -> None:
    torch.set_num_threads(1)
    built = {}
    build = trainer._build_method

    def keep(*args, **kwargs):
        built["method"] = build(*args, **kwargs)
        return built["method"]

    trainer._build_method = keep
    trainer.pretrain(load_config(config))
    state = {k: v.detach().cpu() for k, v in built["method"].state_dict().items()}
    torch.save(state, Path(out) / f"rank{os.environ['RANK']}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:3])


def train_rank(config: dict, out: str) -> None:
    """A SLURM task of a multi-task job: rendezvous through submitit, train, save this rank."""
    import submitit

    from sslight.config.load import resolve

    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    torch.set_num_threads(1)
    built = {}
    build = trainer._build_method

    def keep(*args, **kwargs):
        built["method"] = build(*args, **kwargs)
        return built["method"]

    trainer._build_method = keep
    trainer.pretrain(resolve(config, source="ddp task"))
    state = {k: v.detach().cpu() for k, v in built["method"].state_dict().items()}
    torch.save(state, Path(out) / f"rank{os.environ['RANK']}.pt")
