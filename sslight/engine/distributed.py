"""Process groups for data-parallel training: one process per device, ``env://`` rendezvous.

The variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) come from torchrun or from
submitit's ``TorchDistributedEnvironment().export()``. NCCL on GPUs, gloo on CPUs.
Pretraining joins the group itself; ``sslight run`` joins it once for all of its stages
(``joined``), and the evaluation stages find it there (``current_env``) and run data-parallel,
exchanging what they must through the collectives below.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(use_cuda: bool) -> DistEnv:
    """Join the process group described by the environment; a no-op for a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistEnv()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://")
    log.info("process %d/%d joined (%s)", rank, world_size, dist.get_backend())
    return DistEnv(rank, world_size, local_rank)


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def gather_objects(env: DistEnv, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-element list for a single process)."""
    if not env.enabled:
        return [obj]
    gathered: list[Any] = [None] * env.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def current_env() -> DistEnv:
    """The process group this process has joined, or a single process when there is none; the
    evaluation stages read it so that they run data-parallel inside a distributed ``run``."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistEnv()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank)


@contextlib.contextmanager
def joined(use_cuda: Callable[[], bool]) -> Iterator[DistEnv]:
    """The process group of the environment for the duration: joined here when the caller has not
    joined it yet (and then left again on exit; ``use_cuda()`` picks NCCL or gloo), else the
    caller's."""
    created = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    env = init_distributed(use_cuda()) if created else current_env()
    try:
        yield env
    finally:
        if created:
            shutdown(env)


def broadcast_object(env: DistEnv, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (what the others pass is ignored)."""
    if not env.enabled:
        return obj
    box = [obj if env.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_over_ranks(env: DistEnv, values: list[float]) -> list[float]:
    """The element-wise sum of every rank's ``values`` (float64, so counts stay exact)."""
    if not env.enabled:
        return list(values)
    total = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(total)
    return total.tolist()


def gather_rows(env: DistEnv, rows: torch.Tensor) -> torch.Tensor:
    """Every rank's ``rows`` (any number each, same trailing shape) concatenated in rank order,
    on every rank, on ``rows``' device."""
    if not env.enabled:
        return rows
    device = _collective_device()
    counts = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(env.world_size)]
    dist.all_gather(counts, torch.tensor([len(rows)], device=device))
    sizes = [int(count) for count in counts]
    padded = torch.zeros((max(sizes), *rows.shape[1:]), dtype=rows.dtype, device=device)
    padded[: len(rows)] = rows.to(device)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)]).to(rows.device)


def _collective_device() -> torch.device:
    """Where the group's collectives take tensors: this process's GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
