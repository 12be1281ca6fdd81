"""Per-iteration schedules, precomputed and indexed by the global step (as in DINO main_dino.py)."""

from __future__ import annotations

import numpy as np


def cosine_schedule(
    start: float,
    end: float,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0,
    warmup_start: float = 0.0,
) -> np.ndarray:
    """Linear warmup from ``warmup_start`` to ``start``, then cosine from ``start`` to ``end``.

    Returns one value per iteration: ``epochs × steps_per_epoch`` entries.
    """
    total = epochs * steps_per_epoch
    warmup = min(round(warmup_epochs * steps_per_epoch), total)
    ramp = np.linspace(warmup_start, start, warmup, endpoint=False) if warmup else np.array([])
    t = np.arange(total - warmup)
    span = max(total - warmup, 1)
    cosine = end + 0.5 * (start - end) * (1 + np.cos(np.pi * t / span))
    return np.concatenate([ramp, cosine]).astype(np.float64)


def held_per_epoch(values: np.ndarray, steps_per_epoch: int) -> np.ndarray:
    """``values`` (one per iteration) with every epoch's steps at its first step's value: how the
    seed's ``cls_trainer.py`` sets the learning rate, ``lr_schedule[steps]`` once per epoch."""
    firsts = values[::steps_per_epoch]
    return np.repeat(firsts, steps_per_epoch)[: len(values)]


def epoch_warmup_schedule(start: float, end: float, warmup_epochs: int, epochs: int) -> np.ndarray:
    """Linear from ``start`` to ``end`` over ``warmup_epochs``, then constant (teacher temp)."""
    warmup = min(warmup_epochs, epochs)
    ramp = np.linspace(start, end, warmup) if warmup else np.array([])
    return np.concatenate([ramp, np.full(epochs - warmup, end)]).astype(np.float64)
