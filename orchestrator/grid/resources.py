"""What a grid's jobs ask the scheduler for: a default block plus one block per stage.

``resources:`` in a grid file is either one flat block (every stage job asks for it, as before
stage jobs existed) or a mapping of blocks::

    resources:
      default: {partition: gpu, cpus_per_task: 10, time_min: 60}
      pretrain: {tasks_per_node: 8, gpus_per_node: 8, time_min: 1440}
      linear: {tasks_per_node: 4, gpus_per_node: 4, time_min: 480}
      detection: {tasks_per_node: 8, gpus_per_node: 8, time_min: 720}

A stage block is laid over ``default`` (keys it does not set are the default's). ``semi`` is the
block of every ``semi_<p>`` stage (a ``semi_<p>`` block of its own wins). A job that runs several
stages (``knn`` + ``linear``) asks for the block of its last stage that has one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sslight import ConfigError

DEFAULT = "default"
STAGE_BLOCKS = ("pretrain", "knn", "linear", "semi", "detection", "segmentation")


class Resources(BaseModel):
    """Scheduler resources for one job (SLURM words; ``time_min`` is wall-clock minutes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: str | None = None
    time_min: int = Field(default=60, ge=1)
    nodes: int = Field(default=1, ge=1)
    tasks_per_node: int = Field(default=1, ge=1)
    gpus_per_node: int = Field(default=0, ge=0)
    cpus_per_task: int = Field(default=1, ge=1)
    mem_gb: int | None = Field(default=None, ge=1)

    @field_validator("partition")
    @classmethod
    def _empty_is_default(cls, partition: str | None) -> str | None:
        return partition or None  # `${SLURM_PARTITION:-}` unset: the cluster's default

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def gpu_hours(self) -> float:
        """What one job reserves: its GPUs for its whole time limit."""
        return self.gpus * self.time_min / 60


class StageResources(BaseModel):
    """The default block and the per-stage blocks (already laid over the default)."""

    model_config = ConfigDict(frozen=True)

    default: Resources = Field(default_factory=Resources)
    stages: dict[str, Resources] = Field(default_factory=dict)

    def for_stages(self, stages: Iterable[str]) -> Resources:
        """The block of the last of ``stages`` that has one (``semi`` for ``semi_<p>``)."""
        for stage in reversed(list(stages)):
            for name in (stage, "semi" if stage.startswith("semi_") else None):
                if name in self.stages:
                    return self.stages[name]
        return self.default

    def to_spec(self) -> dict[str, Any]:
        """What the registry stores (and :func:`stage_resources_from_spec` reads back)."""
        return {
            DEFAULT: self.default.model_dump(),
            **{name: block.model_dump() for name, block in self.stages.items()},
        }


def stage_resources_from_spec(spec: Mapping[str, Any] | None) -> StageResources:
    """The resources a registered grid recorded (either form), read back."""
    return parse_resources(dict(spec) if spec else None, "the registry")


def parse_resources(raw: Any, source: str) -> StageResources:
    """``resources:`` of grid file ``source`` in either form; problems are ``ConfigError``s
    naming the key, e.g. ``resources.linear.gpus_per_node``."""
    if raw is None:
        return StageResources()
    if not isinstance(raw, dict):
        raise ConfigError(source, "resources", f"must be a mapping, got {type(raw).__name__}")
    blocks = {k for k in raw if k == DEFAULT or k in STAGE_BLOCKS or str(k).startswith("semi_")}
    if not blocks:  # the flat form: every stage
        return StageResources(default=_block(raw, source, "resources"))
    flat = [k for k in raw if k not in blocks]
    if flat:
        allowed = ", ".join((DEFAULT, *STAGE_BLOCKS, "semi_<p>"))
        raise ConfigError(
            source,
            f"resources.{flat[0]}",
            f"resources mixes a flat block with per-stage blocks; put it under "
            f"resources.default (allowed blocks: {allowed})",
        )
    default_raw = raw.get(DEFAULT) or {}
    default = _block(default_raw, source, f"resources.{DEFAULT}")
    stages = {}
    for name, block in raw.items():
        if name == DEFAULT:
            continue
        _block(block or {}, source, f"resources.{name}")  # its own type and keys, located
        stages[str(name)] = _block({**default_raw, **(block or {})}, source, f"resources.{name}")
    return StageResources(default=default, stages=stages)


def _block(raw: Any, source: str, key: str) -> Resources:
    if not isinstance(raw, dict):
        raise ConfigError(source, key, f"must be a mapping, got {type(raw).__name__}")
    try:
        return Resources.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        located = ".".join(str(part) for part in (key, *first["loc"]))
        if first["type"] == "extra_forbidden":
            problem = f"unknown key; allowed keys: {', '.join(Resources.model_fields)}"
        else:
            problem = f"{first['msg']} (got {first.get('input')!r})"
        raise ConfigError(source, located, problem) from None
