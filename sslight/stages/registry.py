"""Stage name → stage function: one explicit registration line per stage of ``sslight run``.

The names are those of :mod:`sslight.stages.names` (a test keeps the two equal); ``semi_<p>``
stages are made per label fraction of the config by :func:`stage_fn`.
"""

from __future__ import annotations

from typing import Any

from sslight.registry import Registry
from sslight.stages.base import StageFn
from sslight.stages.coco import detection_stage, segmentation_stage
from sslight.stages.knn import knn_stage
from sslight.stages.linear import linear_stage
from sslight.stages.names import semi_stage_name
from sslight.stages.pretrain import pretrain_stage
from sslight.stages.semi import semi_stage

STAGES: Registry[StageFn] = Registry("stage")
STAGES.register("pretrain")(pretrain_stage)
STAGES.register("knn")(knn_stage)
STAGES.register("linear")(linear_stage)
STAGES.register("detection")(detection_stage)
STAGES.register("segmentation")(segmentation_stage)


def stage_fn(cfg: Any, name: str) -> StageFn:
    """The function of stage ``name`` of ``cfg``: a registered one or a ``semi_<p>`` stage."""
    semi = cfg.eval.semi
    for fraction, epochs in zip(semi.fractions, semi.epochs, strict=True):
        if name == semi_stage_name(fraction):
            return semi_stage(fraction, epochs)
    return STAGES.get(name)
