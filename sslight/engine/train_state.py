"""Where pretraining stands, and the one schema its checkpoints are written and read in.

A checkpoint (``checkpoints/last.pt``, written atomically by sslight/engine/checkpoint.py) holds
plain tensors, numbers, strings, lists and dicts only, so it loads with
``torch.load(..., weights_only=True)``:

- ``model``: the student's state dict (the network the optimiser trains), ``probe``: the online
  linear probe's (``{}`` without one);
- ``method_state``: the method's extra state (teacher, centre, queue, ...) of rank 0, and
  ``method_state_per_rank``: every rank's, for a method whose state differs per process (SwAV's
  queues), else ``[]``;
- ``optimizer``; the position ``epoch``, ``batch`` (batches of that epoch done) and ``step``;
- ``rng``: every rank's generator states, so that a resumed run continues bit for bit;
- ``history`` (the last loss, k-NN top-1 and first collapse), ``config``, ``world_size``.

Weight import (sslight/weights/init_weights.py) reads checkpoints through the static methods
here instead of knowing the keys.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sslight.config.load import config_to_dict
from sslight.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from sslight.engine.distributed import DistEnv, gather_objects

if TYPE_CHECKING:
    from sslight.methods.base import SSLMethod

log = logging.getLogger(__name__)

# The keys that tell a pretraining checkpoint from an export or a seed release.
IDENTIFYING_KEYS = frozenset({"model", "method_state", "config"})


@dataclass
class TrainState:
    """The method, its optimiser and the position of a pretraining run: ``epoch`` and ``batch``
    (batches of that epoch done) say where training continues; ``history`` keeps what
    result.json reports at the end."""

    method: SSLMethod
    optimizer: torch.optim.Optimizer
    env: DistEnv
    cfg: Any
    steps_per_epoch: int
    epoch: int = 0
    batch: int = 0
    history: dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> int:
        """The global step training continues at."""
        return self.epoch * self.steps_per_epoch + self.batch

    def save(self, directory: Path, epoch: int, batch: int) -> None:
        """Checkpoint the position (``epoch``, ``batch`` done) on rank 0; every rank must call
        it, since every rank's generators (and per-process method state) are gathered."""
        self.epoch, self.batch = epoch, batch
        rngs = gather_objects(self.env, rng_state())  # every rank's generator, for exact resume
        method = self.method
        per_rank = (
            gather_objects(self.env, method.extra_state()) if method.per_process_state else []
        )
        if self.env.is_main:
            save_checkpoint(self._to_dict(rngs, per_rank), directory)

    def _to_dict(self, rngs: list[Any], per_rank: list[Any]) -> dict[str, Any]:
        method = self.method
        return {
            "model": method.student.state_dict(),
            "probe": method.probe.state_dict() if method.probe is not None else {},
            "method_state": per_rank[0] if per_rank else method.extra_state(),
            "method_state_per_rank": per_rank,
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "rng": rngs,
            "history": self.history,
            "config": config_to_dict(self.cfg),
            "world_size": self.env.world_size,
        }

    def resume(self, directory: Path) -> bool:
        """Continue from the newest checkpoint in ``directory`` (this rank's method state and
        generators when the world size is the one it was saved with, rank 0's otherwise);
        False when there is none."""
        state = load_checkpoint(directory)
        if state is None:
            return False
        rank, world_size = self.env.rank, self.env.world_size
        per_rank = state.get("method_state_per_rank") or []
        own = per_rank[rank] if len(per_rank) == world_size else state["method_state"]
        if self.method.probe is not None:
            self.method.probe.load_state_dict(state["probe"])
        self.load_weights(self.method, state, own)
        self.optimizer.load_state_dict(state["optimizer"])
        rngs = state["rng"]
        set_rng_state(rngs[rank] if len(rngs) == world_size else rngs[0])
        self.epoch, self.batch, self.history = state["epoch"], state["batch"], state["history"]
        log.info("resumed from %s at epoch %d, batch %d", directory, self.epoch, self.batch)
        return True

    @staticmethod
    def is_checkpoint(obj: Any) -> bool:
        """Whether ``obj`` (a loaded file) is a pretraining checkpoint."""
        return isinstance(obj, Mapping) and set(obj) >= IDENTIFYING_KEYS

    @staticmethod
    def load_weights(
        method: SSLMethod, state: Mapping[str, Any], method_state: Any | None = None
    ) -> None:
        """The student and the method's extra state (``method_state``, rank 0's by default)
        from checkpoint ``state`` into ``method``."""
        method.student.load_state_dict(state["model"])
        method.load_extra_state(state["method_state"] if method_state is None else method_state)

    @staticmethod
    def probe_classes(state: Mapping[str, Any]) -> int:
        """The number of classes of the checkpoint's online probe (1 without one)."""
        probe = state.get("probe") or {}
        return probe["weight"].shape[0] if "weight" in probe else 1

    @staticmethod
    def recorded_config(state: Mapping[str, Any]) -> dict[str, Any]:
        """The config the checkpointed run was started with."""
        return state["config"]

    @staticmethod
    def epochs_done(state: Mapping[str, Any]) -> int | None:
        """The epoch the checkpoint continues at (completed epochs), if it records one."""
        return state.get("epoch")
