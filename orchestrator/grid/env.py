"""``${VAR}`` expansion for grid files: every string value of a loaded grid document has
``${VAR}`` and ``${VAR:-default}`` replaced from the environment (the default also when VAR is
empty) and ``$$`` turned into a literal ``$``; an unset VAR without a default, an unclosed
``${`` or a malformed name is a ``ConfigError`` naming the file and the dotted key.
"""

from __future__ import annotations

import os
import re
from typing import Any

from sslight import ConfigError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_TOKEN = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")


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
