"""Data-parallel workers for the tests: pretrain, then save this rank's weights as rank<R>.pt.

``main`` is launched by torchrun (tests/test_distributed.py); ``train_rank`` is a SLURM task of a
multi-task submitit job (tests/test_slurm.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

from sslight.engine import trainer


def _pretrain_and_save(cfg: Any, out: str) -> None:
    torch.set_num_threads(1)
    built = {}
    build = trainer._build_method

    def keep(*args, **kwargs):
        built["method"] = build(*args, **kwargs)
        return built["method"]

    trainer._build_method = keep
    trainer.pretrain(cfg)
    state = {k: v.detach().cpu() for k, v in built["method"].state_dict().items()}
    torch.save(state, Path(out) / f"rank{os.environ['RANK']}.pt")


def main(config: str, out: str) -> None:
    from sslight.config.load import load_config

    _pretrain_and_save(load_config(config), out)


def train_rank(config: dict, out: str) -> None:
    """Rendezvous through submitit's TorchDistributedEnvironment, then train."""
    import submitit

    from sslight.config.load import resolve

    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    _pretrain_and_save(resolve(config, source="ddp task"), out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
