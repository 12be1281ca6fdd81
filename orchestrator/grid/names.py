"""Cell naming for grids: a cell's name joins, with ``-``, one part per key that varies across
the grid (multi-valued axes first, then keys whose values differ between cells), each part the
string value as it is, a number after the key's last segment (``s`` for ``seed``) or ``no_<key>``
for ``null``/``false``; names are cut at ``MAX_NAME_LENGTH``. Also the YAML value comparison
(``same``, ``canonical``, ``normal``) that axis, exclude and naming checks share.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_NAME_LENGTH = 96

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_MISSING = object()


def _lookup(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def names(
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
        if len(axes.get(key, ())) > 1 or len({canonical(row[key]) for row in table}) > 1
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


def canonical(value: Any) -> str:
    if value is _MISSING:
        return "\0missing"
    return json.dumps(value, sort_keys=True, default=str)


def same(a: Any, b: Any) -> bool:
    """YAML values equal in kind and value (``1`` is not ``true``, ``1`` is ``1.0``)."""
    return canonical(normal(a)) == canonical(normal(b))


def normal(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [normal(v) for v in value]
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    return value
