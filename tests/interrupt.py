"""Pretraining killed right after a chosen checkpoint, and the tensors the exact-resume tests
compare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from sslight.engine import train_state
from sslight.engine.trainer import pretrain


def pretrain_killed_after_save(cfg: Any, saves: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretrain ``cfg`` and stop it (KeyboardInterrupt, as a kill) once its ``saves``-th
    checkpoint is written; the checkpoint function is restored afterwards."""
    original_save = train_state.save_checkpoint
    count = {"n": 0}

    def save_then_die(state: dict[str, Any], directory: Any) -> Any:
        path = original_save(state, directory)
        count["n"] += 1
        if count["n"] == saves:
            raise KeyboardInterrupt("simulated kill")
        return path

    monkeypatch.setattr(train_state, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg)
    monkeypatch.setattr(train_state, "save_checkpoint", original_save)


def checkpoint_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a run's last checkpoint: the model's by name, the method state's (teacher,
    key encoder, queues) as ``method_state.<path>``, to compare a resumed run with a whole one."""
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    tensors = dict(state["model"])
    pending: list[tuple[str, Any]] = [("method_state", state["method_state"])]
    while pending:
        prefix, value = pending.pop()
        if isinstance(value, torch.Tensor):
            tensors[prefix] = value
        elif isinstance(value, dict):
            pending.extend((f"{prefix}.{key}", item) for key, item in value.items())
    return tensors
