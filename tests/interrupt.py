"""Pretraining killed right after a chosen checkpoint, for the exact-resume tests."""

from __future__ import annotations

from typing import Any

import pytest

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
