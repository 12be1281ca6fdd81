"""A data-parallel ``sslight run`` for the tests: launched by torchrun (one process per rank,
gloo on the CPU), it runs every stage of CONFIG; rank 0 writes the run directory."""

from __future__ import annotations

import sys

import torch

import sslight
from sslight.config.load import load_config

if __name__ == "__main__":
    torch.set_num_threads(1)
    sslight.run(load_config(sys.argv[1]))
