"""What a cell sends to MLflow: its config as params, metrics.jsonl lines and result.json metrics.

Pure functions from run-directory data to MLflow entities, within MLflow's limits (param values
of at most 6000 characters, names of at most 250 made of letters, digits and ``_-. /:``).
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

log = logging.getLogger(__name__)

MAX_NAME = 250  # mlflow.utils.validation.MAX_ENTITY_KEY_LENGTH
MAX_PARAM_VALUE = 6000  # MAX_PARAM_VAL_LENGTH
MAX_TAG_VALUE = 8000  # MAX_TAG_VAL_LENGTH
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
SKIPPED_RESULT_KEYS = ("error",)  # not metrics; the error message becomes a tag


def metric_name(key: str) -> str:
    """``key`` with characters MLflow refuses replaced by ``_``."""
    return re.sub(r"[^\w.\- /:]", "_", key)[:MAX_NAME]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_params(config: dict[str, Any]) -> dict[str, str]:
    """The resolved config as dotted params (``train.base_lr``); lists and dicts as JSON."""
    params = {}
    for key, value in _flatten(config).items():
        if len(key) > MAX_NAME:
            log.warning("param %s… skipped: MLflow names have at most %d chars", key[:40], MAX_NAME)
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        if len(text) > MAX_PARAM_VALUE:
            text = text[: MAX_PARAM_VALUE - 3] + "..."
        params[metric_name(key)] = text
    return params


def as_number(value: Any) -> float | None:
    """A metric value: numbers and booleans, and the "nan"/"inf" strings metrics.jsonl writes."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.lower() in NON_FINITE:
        return NON_FINITE[value.lower()]
    return None


def line_metrics(record: dict[str, Any]) -> list[tuple[str, float, int]]:
    """(name, value, step) for every numeric key of one metrics.jsonl line (step: its "step")."""
    step = int(record.get("step", 0))
    out = []
    for key, value in record.items():
        number = as_number(value)
        if key != "step" and number is not None:
            out.append((metric_name(key), number, step))
    return out


def result_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Every numeric value of result.json, nested ones dotted (``stages.knn.seconds``)."""
    kept = {k: v for k, v in result.items() if k not in SKIPPED_RESULT_KEYS}
    metrics = {}
    for key, value in _flatten(kept).items():
        number = as_number(value)
        if number is not None:
            metrics[metric_name(key)] = number
    return metrics


def result_tags(result: dict[str, Any]) -> dict[str, str]:
    """Tags a reader looks for in result.json: the failed stage and message, a collapse."""
    tags = {}
    error = result.get("error") or {}
    if error:
        tags["error_stage"] = str(error.get("stage", ""))
        tags["error"] = str(error.get("message", ""))[:MAX_TAG_VALUE]
    collapse = result.get("collapse") or {}
    if collapse:
        tags["collapse_reason"] = str(collapse.get("reason", ""))[:MAX_TAG_VALUE]
    return tags


def cell_tags(run: Any, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The tags every cell's run carries (method, backbone, view_policy, grid, cell_key)."""
    config = run.config
    tags = {
        "method": str(config.get("method", "")),
        "backbone": str(config.get("backbone", "")),
        "view_policy": str((config.get("views") or {}).get("policy", "")),
        "grid": run.grid,
        "cell_key": run.key,
        "cell_name": run.name,
    }
    if getattr(run, "pretrain_key", None):  # the pretraining it shares (plan.py)
        tags["pretrain_key"] = run.pretrain_key
    if getattr(run, "kind", "cell") != "cell":
        tags["job_kind"] = run.kind
    tags.update({metric_name(str(k)): str(v)[:MAX_TAG_VALUE] for k, v in (extra or {}).items()})
    return tags
