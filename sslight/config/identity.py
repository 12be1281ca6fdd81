"""What identifies a run's pretraining: ``pretrain_key``, the hash of exactly the settings that
determine the pretrained weights.

Two configs with the same ``pretrain_key`` train the same network bit for bit (the loader seeds
every sample by ``(seed, epoch, position)``, so worker counts do not matter), however they are
evaluated afterwards: SSLight's Table 2 (Tan et al., ICLR 2023) reports the transfer of the very
networks Table 1 pretrained. Left out are the evaluation settings and stages, where the run
writes, how it logs, checkpoints and shows progress, and the sections of the other methods. The
k-NN monitor's settings count only when ``train.stop_on_collapse`` lets the monitor end
pretraining. ``data.views_device`` is left out as well: views made on an accelerator are drawn
from the same seeds, their pixels differing only in float rounding, so the weights' distribution
is the same.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from sslight.config.load import config_to_dict, stable_hash

# Dotted keys that never change the pretrained weights.
NOT_PRETRAINING = (
    "output_dir",
    "stages",
    "eval",
    "data.num_workers",
    "data.views_device",  # where the views are made, not how they are drawn
    "data.download",
    "data.val_subset",
    "train.log_every_steps",
    "train.checkpoint_every_steps",
    "train.progress",
)
# What the collapse monitor reads; it decides when pretraining ends under train.stop_on_collapse.
MONITOR = ("eval.knn", "eval.network", "data.val_subset")


def pretraining_settings(cfg: BaseModel) -> dict[str, Any]:
    """The resolved config without what does not change the pretrained weights."""
    full = config_to_dict(cfg)
    settings = copy.deepcopy(full)
    for dotted in NOT_PRETRAINING:
        _drop(settings, dotted)
    for other in _method_sections() - {full["method"]}:
        settings.pop(other, None)
    if full["train"].get("stop_on_collapse"):
        for dotted in MONITOR:
            _put(settings, dotted, _get(full, dotted))
    return settings


def pretrain_key(cfg: BaseModel) -> str:
    """A stable 16-hex-digit hash of :func:`pretraining_settings` (as ``config_key`` is of the
    whole config)."""
    return stable_hash(pretraining_settings(cfg))


def _method_sections() -> set[str]:
    """Every method's config section: only the run's own method's section trains it."""
    from sslight.methods import METHODS

    return set(METHODS.names())


def _get(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def _put(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def _drop(tree: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        tree = tree.get(part, {})
    tree.pop(last, None)
