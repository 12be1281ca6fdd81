"""Validation of a grid file's sections: the grid ``name``, the ``axes`` (dotted keys to
non-empty lists of distinct values, at most ``MAX_CELLS`` in their product), the ``exclude`` and
``include`` rules (exclude keys must be axes and their values values of those axes), ``base``
(a run config mapping or a path to one) and the command-line ``key=value`` overrides, which may
not set ``output_dir`` or a key the grid sets per cell. Every problem is one ``ConfigError``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.grid.names import canonical, normal, same
from sslight import ConfigError, apply_overrides, load_yaml

MAX_CELLS = 10_000

_GRID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def string(value: Any, source: str, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(source, key, f"must be a non-empty string, got {value!r}")
    return value


def read_file(
    path: Path, allowed_keys: Iterable[str], workdir: str | Path | None
) -> tuple[dict[str, Any], str, str | Path]:
    """A grid or search file: its document (``${VAR}`` expanded, top-level keys checked), its
    name, and its workdir (``workdir`` from the command line, else the file's, else
    ``runs/<name>``)."""
    from orchestrator.grid.env import expand_env

    source = str(path)
    doc = expand_env(load_yaml(path), source)
    allowed = tuple(allowed_keys)
    unknown = [key for key in doc if key not in allowed]
    if unknown:
        raise ConfigError(
            source, str(unknown[0]), f"unknown key; allowed keys: {', '.join(allowed)}"
        )
    name = grid_name(doc, path, source)
    if workdir is None:
        workdir = string(doc.get("workdir", f"runs/{name}"), source, "workdir")
    elif not str(workdir):
        raise ConfigError("command line", "--workdir", "must not be empty")
    return doc, name, workdir


def grid_name(doc: Mapping[str, Any], path: Path, source: str) -> str:
    if "name" in doc:
        name = doc["name"]
        if not isinstance(name, str) or not _GRID_NAME.fullmatch(name):
            raise ConfigError(
                source, "name", f"{name!r} is not a grid name (letters, digits, '_', '.', '-')"
            )
        return name
    if not _GRID_NAME.fullmatch(path.stem):
        raise ConfigError(
            source, "name", f"the file name {path.stem!r} is not a grid name; set name: explicitly"
        )
    return path.stem


def _dotted(key: Any, source: str, where: str) -> str:
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise ConfigError(source, where, f"{key!r} is not a dotted config key like train.epochs")
    if key == "output_dir" or key.startswith("output_dir."):
        raise ConfigError(
            source, where, "output_dir is set per cell to <workdir>/cells/<name>; set workdir"
        )
    return key


def _check_nesting(keys: list[str], source: str, where: str) -> None:
    """Reject ``views`` next to ``views.policy``: which one wins would depend on order."""
    for a, b in itertools.permutations(keys, 2):
        if b.startswith(a + "."):
            raise ConfigError(source, f"{where}.{b}" if where else b, f"is inside {a}, also set")


def axes(raw: Any, source: str) -> dict[str, list[Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            source, "axes", f"must be a mapping of dotted key -> list, got {type(raw).__name__}"
        )
    axes: dict[str, list[Any]] = {}
    for key, values in raw.items():
        where = f"axes.{key}"
        key = _dotted(key, source, where)
        if not isinstance(values, list):
            raise ConfigError(
                source, where, f"must be a list of values, got {type(values).__name__} {values!r}"
            )
        if not values:
            raise ConfigError(source, where, "is empty; give at least one value")
        seen: set[str] = set()
        for value in values:
            text = canonical(normal(value))
            if text in seen:
                raise ConfigError(source, where, f"lists {value!r} twice")
            seen.add(text)
        axes[key] = values
    _check_nesting(list(axes), source, "axes")
    size = math.prod(len(values) for values in axes.values())
    if size > MAX_CELLS:
        raise ConfigError(source, "axes", f"expand to {size} cells; at most {MAX_CELLS}")
    return axes


def rules(raw: Any, section: str, source: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(source, section, f"must be a list of mappings, got {type(raw).__name__}")
    rules = []
    for i, rule in enumerate(raw):
        where = f"{section}[{i}]"
        if not isinstance(rule, dict) or not rule:
            raise ConfigError(
                source, where, f"must be a non-empty mapping of dotted keys, got {rule!r}"
            )
        rules.append({_dotted(key, source, f"{where}.{key}"): value for key, value in rule.items()})
        _check_nesting(list(rules[-1]), source, where)
    return rules


def check_excludes(excludes: list[dict[str, Any]], axes: dict[str, list[Any]], source: str) -> None:
    for i, rule in enumerate(excludes):
        for key, value in rule.items():
            where = f"exclude[{i}].{key}"
            if key not in axes:
                known = ", ".join(axes) or "none"
                raise ConfigError(
                    source,
                    where,
                    f"is not an axis (axes: {known}); exclude rules match axis values, "
                    "include cells are never excluded",
                )
            if not any(same(value, v) for v in axes[key]):
                raise ConfigError(
                    source,
                    where,
                    f"{value!r} is not a value of the axis; values: "
                    + ", ".join(repr(v) for v in axes[key]),
                )


def base(raw: Any, path: Path, source: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and raw:
        target = Path(raw).expanduser()
        return load_yaml(target if target.is_absolute() else path.parent / target)
    raise ConfigError(source, "base", f"must be a run config mapping or a path to one, got {raw!r}")


def apply_command_line(
    base: dict[str, Any], overrides: Iterable[str], cell_keys: list[str]
) -> dict[str, Any]:
    overrides = list(overrides)
    out = apply_overrides(base, overrides)  # reports malformed items
    for item in overrides:
        key = item.partition("=")[0]
        if key == "output_dir" or key.startswith("output_dir."):
            raise ConfigError("command line", key, "is set per cell; use --workdir DIR")
        for cell_key in cell_keys:
            if key == cell_key or key.startswith(cell_key + "."):
                raise ConfigError(
                    "command line",
                    key,
                    f"is set per cell by the grid ({cell_key}); edit the grid file to change it",
                )
    return out
