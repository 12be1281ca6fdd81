"""Momentum (EMA) target networks: the update and the base class of the methods that keep one.

A momentum method trains an online network (the student, ``self.student``) and keeps a target
copy that follows it only by an exponential moving average of its parameters,
``θ_target ← m·θ_target + (1 − m)·θ_online`` after every optimiser step, with ``m`` on a cosine
schedule from its start to its end value per iteration (DINO, Caron et al. 2021, Sec. 3; MoCo,
He et al. 2020, Sec. 3.2, whose constant ``m`` is the schedule with equal ends). Only parameters
follow: the target's BatchNorm statistics are its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from sslight.engine.schedules import cosine_schedule
from sslight.methods.base import SSLMethod, StepContext

if TYPE_CHECKING:
    from sslight.config.schema import RunConfigBase


@torch.no_grad()
def update_momentum(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """``θ_target ← momentum·θ_target + (1 − momentum)·θ_online``, parameter by parameter."""
    target_params = list(target.parameters())
    online_params = [p.detach() for p in online.parameters()]
    torch._foreach_mul_(target_params, momentum)
    torch._foreach_add_(target_params, online_params, alpha=1 - momentum)


class MomentumMethod(SSLMethod):
    """A method with an EMA target of its student (DINO's teacher, MoCo's key encoder).

    Subclasses build the target in ``__init__`` and say which module it is
    (``momentum_target``) and the schedule's ends (``momentum_range``); this class precomputes
    the schedule in ``setup``, logs its value each step and updates the target after each
    optimiser step.
    """

    def __init__(self, cfg: RunConfigBase, backbone: nn.Module, num_classes: int) -> None:
        super().__init__(cfg, backbone, num_classes)
        self.momentum = np.empty(0)  # one value per global step, filled by setup

    def momentum_target(self) -> nn.Module:
        """The network that follows the student by momentum."""
        raise NotImplementedError

    def momentum_range(self) -> tuple[float, float]:
        """The momentum at the first and at the last iteration."""
        raise NotImplementedError

    def setup(self, epochs: int, steps_per_epoch: int) -> None:
        start, end = self.momentum_range()
        self.momentum = cosine_schedule(start, end, epochs, steps_per_epoch)

    def schedule_logs(self, ctx: StepContext) -> dict[str, float]:
        return {"momentum": float(self.momentum[ctx.step])}

    def after_optimizer_step(self, ctx: StepContext) -> None:
        update_momentum(self.student, self.momentum_target(), float(self.momentum[ctx.step]))
