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
    resources: {...}          # what each stage job asks the scheduler for: one block, or a
                              # default plus per-stage blocks (orchestrator/grid/resources.py)

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
experiment, not where it runs, so ``--workdir`` (or a changed ``workdir:``) keeps every key. A
cell's ``pretrain_key`` (``sslight.pretrain_key``) identifies its pretraining alone: Table 2's
cells have the keys of Table 1's matching cells.

Every problem is one ``ConfigError``: the grid file, the key (e.g. ``axes.backbone``,
``exclude[1].method``, ``resources.nodes``) and the problem. A cell that fails validation is
reported as ``<file>: cell <name>: <config key>: <problem>``.
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from orchestrator.grid import names as grid_names
from orchestrator.grid import parse as grid_parse
from orchestrator.grid.env import expand_env
from orchestrator.grid.names import MAX_NAME_LENGTH, same
from orchestrator.grid.parse import MAX_CELLS
from orchestrator.grid.resources import Resources, StageResources, parse_resources
from sslight import ConfigError, config_key, config_to_dict, pretrain_key, set_dotted
from sslight import resolve as resolve_config

__all__ = [
    "MAX_CELLS",
    "MAX_NAME_LENGTH",
    "TOP_LEVEL_KEYS",
    "Cell",
    "Grid",
    "Resources",
    "StageResources",
    "expand_env",
    "load_grid",
]

TOP_LEVEL_KEYS = ("name", "workdir", "base", "axes", "exclude", "include", "resources")


@dataclass(frozen=True)
class Cell:
    """One run of a grid: its resolved config and where it runs."""

    name: str
    key: str
    output_dir: str
    values: dict[str, Any]  # the dotted keys the grid set for this cell (axes or include rule)
    config: BaseModel

    @property
    def pretrain_key(self) -> str:
        """What its pretraining is: cells of any grid with the same one train the same network."""
        return pretrain_key(self.config)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "pretrain_key": self.pretrain_key,
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
    resources: StageResources
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
    doc, name, workdir = grid_parse.read_file(path, TOP_LEVEL_KEYS, workdir)
    axes = grid_parse.axes(doc.get("axes"), source)
    excludes = grid_parse.rules(doc.get("exclude"), "exclude", source)
    includes = grid_parse.rules(doc.get("include"), "include", source)
    grid_parse.check_excludes(excludes, axes, source)
    resources = parse_resources(doc.get("resources"), source)
    base = grid_parse.base(doc.get("base"), path, source)
    base = grid_parse.apply_command_line(
        base, overrides, [*axes, *(k for rule in includes for k in rule)]
    )
    specs = _cell_values(axes, excludes, includes, source)
    cells, duplicates = _expand(specs, base, axes, name, str(workdir), source)
    return Grid(name, path, str(workdir), resources, tuple(cells), tuple(duplicates))


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
        if not any(all(same(cell[k], v) for k, v in rule.items()) for rule in excludes)
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
    names = grid_names.names(specs, base, axes, grid_name)
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
        set_dotted(out, dotted, copy.deepcopy(value), source)
    return out
