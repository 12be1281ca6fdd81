"""Base model for every config section: unknown keys are errors, never silently ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config section. Extra keys are rejected so typos surface at load time."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
