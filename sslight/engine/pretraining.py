"""The parts of a pretraining run once it is set up, shared by the epoch loop and the epoch end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from sslight.engine.distributed import DistEnv
from sslight.engine.metrics import MetricsLog
from sslight.engine.monitors import EpochMonitor
from sslight.engine.pretrain_data import PretrainData
from sslight.engine.rundir import RunDir
from sslight.engine.runtime import Runtime
from sslight.engine.train_state import TrainState


@dataclass
class Pretraining:
    """What sslight/engine/trainer.py assembles: ``model`` is the method itself or its
    DistributedDataParallel wrapper (what a step calls), ``state.method`` the method; the
    schedules hold one learning rate and one weight decay per global step."""

    cfg: Any
    env: DistEnv
    run_dir: RunDir
    rt: Runtime
    data: PretrainData
    model: nn.Module
    state: TrainState
    lr_schedule: np.ndarray
    wd_schedule: np.ndarray
    metrics: MetricsLog
    monitor: EpochMonitor
    show_bar: bool

    @property
    def steps_per_epoch(self) -> int:
        return self.data.steps_per_epoch
