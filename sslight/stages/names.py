"""Stage names as data: what ``stages:`` in a run config may list, importing nothing heavy.

Resolving a config checks its stages against these names, so this module must stay a leaf: the
stages themselves (sslight/stages/registry.py) import the trainer and the detection code.
"""

from __future__ import annotations

from collections.abc import Iterable

PRETRAIN = "pretrain"
COCO_STAGES = ("detection", "segmentation")  # need a backbone with detection feature maps
STAGE_NAMES = (PRETRAIN, "knn", "linear", *COCO_STAGES)
"""Every registered stage; one more ``semi_<p>`` per label fraction of ``eval.semi``."""


def percent_tag(fraction: float) -> str:
    """``0.01 -> "1"``, ``0.1 -> "10"``, ``0.005 -> "0.5"``: the ``<p>`` of ``semi_<p>``."""
    return f"{fraction * 100:g}"


def semi_stage_name(fraction: float) -> str:
    """The semi-supervised stage of label fraction ``fraction``: ``semi_1`` for 1 %."""
    return f"semi_{percent_tag(fraction)}"


def stage_names(semi_fractions: Iterable[float]) -> list[str]:
    """Every stage a config can run: the registered ones (sorted) plus one ``semi_<p>`` per label
    fraction."""
    return [*sorted(STAGE_NAMES), *(semi_stage_name(f) for f in semi_fractions)]
