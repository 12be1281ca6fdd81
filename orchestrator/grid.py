"""Grid files: one YAML document describing many runs, expanded into resolved run configs (cells).

Format::

    name: table1              # grid name: letters, digits, '_', '.', '-' (default: the file stem)
    workdir: runs/table1      # default runs/<name>, relative to the current directory;
                              # cell <c> runs in <workdir>/cells/<c>
    base: {...}               # a run config (the keys of experiments/smoke/*.yaml), or a path to
                              # one (`base: configs/x.yaml`), relative to the grid file
    axes:                     # dotted key -> non-empty list of values
      backbone: [vit_tiny, resnet18]
      views.policy: [baseline, sslight]
    exclude:                  # drop product cells whose axis values match every key of a rule
      - {backbone: vit_tiny, views.policy: baseline}
    include:                  # extra cells: dotted keys set over base
      - {method: swav, backbone: mobilenet_v2, views.policy: baseline}
    resources: {...}          # what one cell's job asks the scheduler for (``Resources``)

Expansion, in order:

1. ``${VAR}`` and ``${VAR:-default}`` in any string value of the grid file are replaced from the
   environment (the default also when VAR is empty); ``$$`` is a literal ``$``. An unset VAR
   without a default is an error. Results are strings; the run config's types convert them
   (``'${EPOCHS:-200}'`` validates as the integer 200). A run config named by ``base: PATH`` is
   read as ``sslight run`` reads it, without expansion.
2. Command-line ``key=value`` overrides are applied to ``base``. They may not set ``output_dir`` or
   a key that an axis or an include rule sets (that would silently rename or merge cells).
3. The axes' cross product, first axis slowest, minus the cells matching an ``exclude`` rule.
   Rule keys must be axes and rule values values of those axes. Exclusion applies to the product
   only: ``include`` cells are always added after it. With no axes, the grid is its include cells,
   or, with neither, the base alone.
4. Each cell sets its values at their dotted keys (replacing what is there; a mapping value
   replaces the whole section), ``output_dir`` becomes ``<workdir>/cells/<name>`` (any
   ``output_dir`` in base is replaced) and ``sslight.config.resolve`` fills presets and validates.
5. Cells with the same key are the same run: only the first is kept.

Names are read from the keys that vary: axes with more than one value (whatever ``exclude``
drops) and any key whose value differs between cells, the axes first, then keys that only
include rules set; values are joined with ``-``, e.g. ``dino-resnet18-sslight``. Strings appear as
they are; numbers after the key's last segment (``epochs100``), except ``seed`` (``s0``); ``null``
and ``false`` as ``no_<last segment>``. A cell's value for a key it does not set is the base's, if
any. Names are cut at 96 characters; names that still collide get ``-<first 8 hex digits of the
key>`` appended.

The key is ``config_key`` of the resolved config with ``output_dir`` blanked: it identifies the
experiment, not where it runs, so ``--workdir`` (or a changed ``workdir:``) keeps every key.

Every problem is one ``ConfigError``: the grid file, the key (e.g. ``axes.backbone``,
``exclude[1].method``, ``resources.nodes``) and the problem. A cell that fails validation is
reported as ``<file>: cell <name>: <config key>: <problem>``.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sslight.config import ConfigError, apply_overrides, config_key, config_to_dict, load_yaml
from sslight.config import resolve as resolve_config

TOP_LEVEL_KEYS = ("name", "workdir", "base", "axes", "exclude", "include", "resources")
MAX_CELLS = 10_000
MAX_NAME_LENGTH = 96

_GRID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_TOKEN = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_MISSING = object()


class Resources(BaseModel):
    """Scheduler resources for one cell's job (SLURM words; ``time_min`` is wall-clock minutes)."""

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


@dataclass(frozen=True)
class Cell:
    """One run of a grid: its resolved config and where it runs."""

    name: str
    key: str
    output_dir: str
    values: dict[str, Any]  # the dotted keys the grid set for this cell (axes or include rule)
    config: BaseModel

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "output_dir": self.output_dir,
            "values": copy.deepcopy(self.values),
            "config": config_to_dict(self.config),
        }


@dataclass(frozen=True)
class Grid:
    """An expanded grid file."""

    name: str
    path: Path
    workdir: str
    resources: Resources
    cells: tuple[Cell, ...]
    duplicates: tuple[str, ...] = field(default=())  # cells dropped as repeats of an earlier key


def load_grid(
    path: str | Path, overrides: Iterable[str] = (), workdir: str | Path | None = None
) -> Grid:
    """Read, validate and expand the grid file ``path`` (see the module docstring).

    ``overrides`` are ``key=value`` settings for every cell's run config; ``workdir`` replaces the
    file's ``workdir`` (keys do not change).
    """
    path = Path(path)
    source = str(path)
    doc = expand_env(load_yaml(path), source)
    unknown = [key for key in doc if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise ConfigError(
            source, str(unknown[0]), f"unknown key; allowed keys: {', '.join(TOP_LEVEL_KEYS)}"
        )
    name = _grid_name(doc, path, source)
    if workdir is None:
        workdir = _string(doc.get("workdir", f"runs/{name}"), source, "workdir")
    elif not str(workdir):
        raise ConfigError("command line", "--workdir", "must not be empty")
    axes = _axes(doc.get("axes"), source)
    excludes = _rules(doc.get("exclude"), "exclude", source)
    includes = _rules(doc.get("include"), "include", source)
    _check_excludes(excludes, axes, source)
    resources = _resources(doc.get("resources"), source)
    base = _base(doc.get("base"), path, source)
    base = _apply_command_line(base, overrides, [*axes, *(k for rule in includes for k in rule)])
    specs = _cell_values(axes, excludes, includes, source)
    cells, duplicates = _expand(specs, base, axes, name, str(workdir), source)
    return Grid(name, path, str(workdir), resources, tuple(cells), tuple(duplicates))


# ---------------------------------------------------------------------------------------------
# Environment variables
# ---------------------------------------------------------------------------------------------


def expand_env(data: Any, source: str, where: str = "") -> Any:
    """``data`` with ``${VAR}`` / ``${VAR:-default}`` replaced in every string value."""
    if isinstance(data, str):
        return _expand_string(data, source, where)
    if isinstance(data, list):
        return [expand_env(item, source, f"{where}[{i}]") for i, item in enumerate(data)]
    if isinstance(data, dict):
        return {
            key: expand_env(value, source, f"{where}.{key}" if where else str(key))
            for key, value in data.items()
        }
    return data


def _expand_string(text: str, source: str, where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$$":
            return "$"
        body = match.group(1)
        if body is None:
            raise ConfigError(source, where, f"unclosed '${{' in {text!r}")
        var, sep, default = body.partition(":-")
        if not _ENV_NAME.fullmatch(var) or "${" in default:
            raise ConfigError(
                source, where, f"malformed {token!r}; write ${{NAME}} or ${{NAME:-default}}"
            )
        value = os.environ.get(var)
        if value:
            return value
        if sep:
            return default
        if value is None:
            raise ConfigError(
                source,
                where,
                f"environment variable {var} is not set (set it, or write ${{{var}:-default}})",
            )
        return value

    return _ENV_TOKEN.sub(replace, text)


# ---------------------------------------------------------------------------------------------
# Top-level sections
# ---------------------------------------------------------------------------------------------


def _string(value: Any, source: str, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(source, key, f"must be a non-empty string, got {value!r}")
    return value


def _grid_name(doc: Mapping[str, Any], path: Path, source: str) -> str:
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


def _axes(raw: Any, source: str) -> dict[str, list[Any]]:
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
            canonical = _canonical(_normal(value))
            if canonical in seen:
                raise ConfigError(source, where, f"lists {value!r} twice")
            seen.add(canonical)
        axes[key] = values
    _check_nesting(list(axes), source, "axes")
    size = math.prod(len(values) for values in axes.values())
    if size > MAX_CELLS:
        raise ConfigError(source, "axes", f"expand to {size} cells; at most {MAX_CELLS}")
    return axes


def _rules(raw: Any, section: str, source: str) -> list[dict[str, Any]]:
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


def _check_excludes(
    excludes: list[dict[str, Any]], axes: dict[str, list[Any]], source: str
) -> None:
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
            if not any(_same(value, v) for v in axes[key]):
                raise ConfigError(
                    source,
                    where,
                    f"{value!r} is not a value of the axis; values: "
                    + ", ".join(repr(v) for v in axes[key]),
                )


def _resources(raw: Any, source: str) -> Resources:
    if raw is None:
        return Resources()
    if not isinstance(raw, dict):
        raise ConfigError(source, "resources", f"must be a mapping, got {type(raw).__name__}")
    try:
        return Resources.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in ("resources", *first["loc"]))
        if first["type"] == "extra_forbidden":
            problem = f"unknown key; allowed keys: {', '.join(Resources.model_fields)}"
        else:
            problem = f"{first['msg']} (got {first.get('input')!r})"
        raise ConfigError(source, key, problem) from None


def _base(raw: Any, path: Path, source: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and raw:
        target = Path(raw).expanduser()
        return load_yaml(target if target.is_absolute() else path.parent / target)
    raise ConfigError(source, "base", f"must be a run config mapping or a path to one, got {raw!r}")


def _apply_command_line(
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


# ---------------------------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------------------------


def _cell_values(
    axes: dict[str, list[Any]],
    excludes: list[dict[str, Any]],
    includes: list[dict[str, Any]],
    source: str,
) -> list[dict[str, Any]]:
    """The dotted values of every cell, in order: the product less exclusions, then includes."""
    if axes:
        product = [
            dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())
        ]
    else:
        product = [] if includes else [{}]
    kept = [
        cell
        for cell in product
        if not any(all(_same(cell[k], v) for k, v in rule.items()) for rule in excludes)
    ]
    if not kept and not includes:
        raise ConfigError(source, "exclude", "excludes every cell and include adds none")
    return [*kept, *(copy.deepcopy(rule) for rule in includes)]


def _expand(
    specs: list[dict[str, Any]],
    base: dict[str, Any],
    axes: dict[str, list[Any]],
    grid_name: str,
    workdir: str,
    source: str,
) -> tuple[list[Cell], list[str]]:
    names = _names(specs, base, axes, grid_name)
    seen: set[str] = set()
    kept: list[tuple[str, dict[str, Any], dict[str, Any], str]] = []
    duplicates: list[str] = []
    for name, values in zip(names, specs, strict=True):
        raw = _assign(base, values, f"{source}: cell {name}")
        raw["output_dir"] = ""
        key = config_key(resolve_config(raw, source=f"{source}: cell {name}"))
        if key in seen:
            duplicates.append(name)
            continue
        seen.add(key)
        kept.append((name, values, raw, key))

    counts = Counter(name for name, *_ in kept)
    taken = {name for name, count in counts.items() if count == 1}
    cells = []
    for name, values, raw, key in kept:
        if counts[name] > 1:
            name = f"{name}-{key[:8]}"
            name = name if name not in taken else f"{name}{key[8:]}"  # the full key is unique
            taken.add(name)
        output_dir = str(Path(workdir) / "cells" / name)
        config = resolve_config({**raw, "output_dir": output_dir}, source=f"{source}: cell {name}")
        cells.append(Cell(name, key, output_dir, values, config))
    return cells, duplicates


def _assign(base: dict[str, Any], values: Mapping[str, Any], source: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for dotted, value in values.items():
        node = out
        parts = dotted.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    source, dotted, f"{'.'.join(parts[: depth + 1])} is not a section"
                )
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return out


def _lookup(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _names(
    specs: list[dict[str, Any]], base: dict[str, Any], axes: dict[str, list[Any]], grid_name: str
) -> list[str]:
    keys = list(axes)
    for values in specs:
        keys.extend(key for key in values if key not in keys)
    table = [
        {key: values[key] if key in values else _lookup(base, key) for key in keys}
        for values in specs
    ]
    varying = [
        key
        for key in keys
        if len(axes.get(key, ())) > 1 or len({_canonical(row[key]) for row in table}) > 1
    ] or keys
    names = []
    for row in table:
        parts = [_part(key, row[key]) for key in varying if row[key] is not _MISSING]
        name = "-".join(part for part in parts if part)[:MAX_NAME_LENGTH].strip("-")
        names.append(name or grid_name)
    return names


def _part(key: str, value: Any) -> str:
    label = "s" if key == "seed" else key.rsplit(".", 1)[-1]
    if isinstance(value, str):
        text = value
    elif value is None or value is False:
        text = f"no_{label}"
    elif value is True:
        text = label
    elif isinstance(value, int | float):
        text = f"{label}{value}"
    else:
        text = f"{label}_{json.dumps(value, separators=(',', ':'), sort_keys=True)}"
    return _UNSAFE.sub("_", text).strip("_.-")


def _canonical(value: Any) -> str:
    if value is _MISSING:
        return "\0missing"
    return json.dumps(value, sort_keys=True, default=str)


def _same(a: Any, b: Any) -> bool:
    """YAML values equal in kind and value (``1`` is not ``true``, ``1`` is ``1.0``)."""
    return _canonical(_normal(a)) == _canonical(_normal(b))


def _normal(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value
