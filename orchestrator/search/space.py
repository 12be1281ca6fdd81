"""The view-policy search space: four parameters that span the baseline and SSLight policies.

SSLight (Tan et al., ICLR 2023, Sec. 4) changes exactly four things of the seed's multi-crop
views; the search makes each of them a parameter:

``scale_boundary`` (s)
    global crops sample area fractions in [s, 1], local crops in [0.05, s]
    (baseline CNN s = 0.14, SSLight s = 0.3).
``local_size``
    local crop size in px at the paper's 224 px, scaled by ``image_size / 224`` like the presets
    (96 baseline, 128 SSLight).
``local_number``
    how many local crops (6 for CNNs in both policies).
``global_global``
    the weight of the global–global loss terms; global–local gets ``1 - global_global``
    (baseline DINO CNN 2/14, SSLight 0.4).

Each parameter is a range ``{low, high}`` (with optional ``step``, and ``log`` for the two float
parameters) or ``{choices: [...]}``. The baseline and SSLight points of the run's method ×
backbone family (``reference_points``) must lie in the space: every study starts with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sslight import REFERENCE_SIZE, SSLIGHT_CHANGES, ConfigError, scale_crop_size

PARAMETERS: dict[str, type] = {
    "scale_boundary": float,
    "local_size": int,
    "local_number": int,
    "global_global": float,
}
LOCAL_MIN_SCALE = 0.05  # the seed's lower bound of local crop areas, in both policies
_RANGE_KEYS = ("low", "high", "step", "log")


@dataclass(frozen=True)
class Parameter:
    """One searched parameter: a range or a list of choices."""

    name: str
    kind: type
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def distribution(self) -> BaseDistribution:
        if self.choices is not None:
            return CategoricalDistribution(self.choices)
        if self.kind is int:
            return IntDistribution(int(self.low), int(self.high), step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> Any:
        """``value`` as this parameter holds it, or None when it lies outside the space."""
        if self.choices is not None:
            return next((c for c in self.choices if math.isclose(c, value, abs_tol=1e-9)), None)
        return value if self.low - 1e-12 <= value <= self.high + 1e-12 else None

    def grid(self) -> list[Any] | None:
        """The finite values a grid search visits, or None for a continuous range."""
        if self.choices is not None:
            return list(self.choices)
        if self.kind is int:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return [round(self.low + i * self.step, 10) for i in range(count)]

    def to_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        return out


def parse_space(raw: Any, source: str) -> dict[str, Parameter]:
    """Validate the ``space:`` section (every parameter of ``PARAMETERS``, nothing else)."""
    if not isinstance(raw, dict):
        raise ConfigError(source, "space", f"must be a mapping of {', '.join(PARAMETERS)}")
    unknown = [name for name in raw if name not in PARAMETERS]
    if unknown:
        raise ConfigError(
            source, f"space.{unknown[0]}", f"unknown parameter; allowed: {', '.join(PARAMETERS)}"
        )
    missing = [name for name in PARAMETERS if name not in raw]
    if missing:
        raise ConfigError(source, f"space.{missing[0]}", "required parameter is missing")
    space = {name: _parameter(name, raw[name], source) for name in PARAMETERS}
    _check_bounds(space, source)
    return space


def _parameter(name: str, raw: Any, source: str) -> Parameter:
    kind, key = PARAMETERS[name], f"space.{name}"
    if not isinstance(raw, dict):
        raise ConfigError(source, key, "must be {low, high[, step][, log]} or {choices: [...]}")
    if "choices" in raw:
        if set(raw) != {"choices"}:
            raise ConfigError(source, key, "choices cannot be combined with low/high/step/log")
        choices = raw["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(source, f"{key}.choices", "must be a non-empty list")
        for value in choices:
            _number(value, kind, source, f"{key}.choices")
        return Parameter(name, kind, choices=tuple(kind(v) for v in choices))
    unknown = [k for k in raw if k not in _RANGE_KEYS]
    if unknown:
        raise ConfigError(
            source,
            f"{key}.{unknown[0]}",
            f"unknown key; allowed: {', '.join(_RANGE_KEYS)}, choices",
        )
    for bound in ("low", "high"):
        if bound not in raw:
            raise ConfigError(source, f"{key}.{bound}", "required key is missing")
        _number(raw[bound], kind, source, f"{key}.{bound}")
    low, high = raw["low"], raw["high"]
    if low > high:
        raise ConfigError(source, key, f"low {low} is larger than high {high}")
    step = raw.get("step")
    if step is not None:
        _number(step, kind, source, f"{key}.step")
        if step <= 0:
            raise ConfigError(source, f"{key}.step", f"must be positive, got {step}")
    log = raw.get("log", False)
    if not isinstance(log, bool) or (log and (kind is int or step is not None)):
        raise ConfigError(
            source, f"{key}.log", "true/false, and only for float ranges without step"
        )
    return Parameter(name, kind, low=kind(low), high=kind(high), step=step, log=log)


def _number(value: Any, kind: type, source: str, key: str) -> None:
    ok = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(source, key, f"must be {what}, got {value!r}")


def _extremes(param: Parameter) -> tuple[float, float]:
    values = param.choices if param.choices is not None else (param.low, param.high)
    return min(values), max(values)


def _check_bounds(space: dict[str, Parameter], source: str) -> None:
    s_low, s_high = _extremes(space["scale_boundary"])
    if s_low <= LOCAL_MIN_SCALE or s_high > 1:
        raise ConfigError(
            source,
            "space.scale_boundary",
            f"must lie in ({LOCAL_MIN_SCALE}, 1], local crops sample [{LOCAL_MIN_SCALE}, s]",
        )
    size_low, size_high = _extremes(space["local_size"])
    if size_low < 1 or size_high > REFERENCE_SIZE:
        raise ConfigError(
            source,
            "space.local_size",
            f"must lie in [1, {REFERENCE_SIZE}] (px at 224, the global crop size)",
        )
    if _extremes(space["local_number"])[0] < 1:
        raise ConfigError(source, "space.local_number", "must be at least 1")
    w_low, w_high = _extremes(space["global_global"])
    if w_low < 0 or w_high > 1:
        raise ConfigError(source, "space.global_global", "must lie in [0, 1]")


def reference_points(method: Any, family: str) -> dict[str, dict[str, Any]]:
    """The ``baseline`` and ``sslight`` presets of a method × backbone family as parameters."""
    baseline = method.baseline_views.get(family)
    if baseline is None:
        return {}
    sslight = {**baseline, **SSLIGHT_CHANGES}
    return {
        name: _as_params(geometry)
        for name, geometry in (("baseline", baseline), ("sslight", sslight))
    }


def _as_params(geometry: dict[str, Any]) -> dict[str, Any]:
    return {
        "scale_boundary": float(geometry["global_scale"][0]),
        "local_size": int(geometry["local_size"]),
        "local_number": int(geometry["local_number"]),
        "global_global": float(geometry["loss_weights"][0]),
    }


def check_references(
    space: dict[str, Parameter], points: dict[str, dict[str, Any]], source: str
) -> dict[str, dict[str, Any]]:
    """The reference points as the space holds them; each must lie in the space."""
    held: dict[str, dict[str, Any]] = {}
    for label, params in points.items():
        held[label] = {}
        for name, value in params.items():
            value_in_space = space[name].contains(value)
            if value_in_space is None:
                raise ConfigError(
                    source,
                    f"space.{name}",
                    f"{space[name].to_dict()} does not contain the {label} point {value:g}; "
                    "widen it so every study can compare against the baseline and SSLight",
                )
            held[label][name] = value_in_space
    return held


def suggest(trial: optuna.Trial, space: dict[str, Parameter]) -> dict[str, Any]:
    """Draw (or, for enqueued trials, read) every parameter of ``space``."""
    return {name: _suggest_one(trial, param) for name, param in space.items()}


def _suggest_one(trial: optuna.Trial, param: Parameter) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(param.name, list(param.choices))
    if param.kind is int:
        step = int(param.step or 1)
        return trial.suggest_int(param.name, int(param.low), int(param.high), step=step)
    return trial.suggest_float(param.name, param.low, param.high, step=param.step, log=param.log)


def views_for(params: dict[str, Any], image_size: int, patch_size: int | None) -> dict[str, Any]:
    """The ``views`` section (``policy: custom``) of one point of the space."""
    s, w_gg = float(params["scale_boundary"]), float(params["global_global"])
    return {
        "policy": "custom",
        "global_crops": {
            "number": 2,
            "size": scale_crop_size(REFERENCE_SIZE, image_size, patch_size),
            "scale": [s, 1.0],
        },
        "local_crops": {
            "number": int(params["local_number"]),
            "size": scale_crop_size(int(params["local_size"]), image_size, patch_size),
            "scale": [LOCAL_MIN_SCALE, s],
        },
        "loss_weights": {"global_global": w_gg, "global_local": 1.0 - w_gg},
    }
