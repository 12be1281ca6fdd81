"""``sslight pretrain CONFIG`` that SIGKILLs itself at one chosen point (tests/test_faults.py).

    python tests/fault_worker.py CONFIG PHASE@STEP      (or ``run(CONFIG, SPEC)`` in a process)

STEP is the global step a checkpoint records (steps done); PHASE says where the kill lands:

- ``saved``        right after the checkpoint of STEP is complete (``last.pt`` replaced)
- ``tmp-written``  the temporary file is written and synced, nothing renamed yet
- ``rotated``      ``last.pt`` was moved to ``prev.pt``, the temporary file not yet renamed
- ``partial``      half of the checkpoint's bytes are in the temporary file
- ``mid-step``     during the training step that would produce STEP (before the optimizer step)

The fault is injected by wrapping the module globals ``save_checkpoint`` uses (``os``,
``torch``), so the code under test is the product's own, unchanged.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from typing import Any

import torch

PHASES = ("saved", "tmp-written", "rotated", "partial", "mid-step")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(phase: str, step: int) -> None:
    from sslight.engine import checkpoint, train_state
    from sslight.methods.dino import DINO

    if phase not in PHASES:
        raise SystemExit(f"unknown phase {phase!r}; one of {', '.join(PHASES)}")
    saving: dict[str, Any] = {"step": None}
    real_save = checkpoint.save_checkpoint

    def save(state: dict[str, Any], directory: Any) -> Any:
        saving["step"] = state["step"]
        path = real_save(state, directory)
        if phase == "saved" and state["step"] == step:
            _die()
        saving["step"] = None
        return path

    class FaultyOs:
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        def replace(self, src: Any, dst: Any) -> None:
            if saving["step"] == step and (
                phase == "tmp-written" or (phase == "rotated" and str(src).endswith(".tmp"))
            ):
                _die()
            os.replace(src, dst)

    class FaultyTorch:
        def __getattr__(self, name: str) -> Any:
            return getattr(torch, name)

        def save(self, obj: Any, handle: Any) -> None:
            if phase == "partial" and saving["step"] == step:
                buffer = io.BytesIO()
                torch.save(obj, buffer)
                data = buffer.getvalue()
                handle.write(data[: len(data) // 2])
                handle.flush()
                os.fsync(handle.fileno())
                _die()
            torch.save(obj, handle)

    real_step = DINO.training_step

    def training_step(self: Any, views: Any, labels: Any, ctx: Any) -> Any:
        out = real_step(self, views, labels, ctx)
        if phase == "mid-step" and ctx.step == step - 1:
            _die()
        return out

    train_state.save_checkpoint = save
    checkpoint.os = FaultyOs()
    checkpoint.torch = FaultyTorch()
    DINO.training_step = training_step


def run(config: str, spec: str) -> None:
    """Pretrain ``config`` with the fault ``spec`` (``PHASE@STEP`` or ``none``); exit with the
    CLI's code, or die by SIGKILL at the fault."""
    torch.set_num_threads(2)  # as the uninterrupted reference run in the test process
    if spec != "none":
        phase, _, step = spec.partition("@")
        install(phase, int(step))
    from sslight.cli import main as sslight_main

    sys.exit(sslight_main(["pretrain", str(config)]))


if __name__ == "__main__":
    run(*sys.argv[1:])
