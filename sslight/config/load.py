"""YAML + dotted ``key=value`` overrides → recipe defaults and view presets → a validated RunConfig.

Every problem becomes one ``ConfigError`` naming the source, the dotted key and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from sslight.config.errors import ConfigError
from sslight.config.schema import RunConfigBase, run_config_model
from sslight.config.views import preset_views
from sslight.models.backbones import BACKBONES, backbone_spec

_IMAGE_SIZE = TypeAdapter(Annotated[int, Field(ge=8, le=1024)])


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning I/O and syntax errors into ConfigError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(str(path), "", f"cannot read file: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            str(path), "", f"not UTF-8 text (byte {err.start}): expected a YAML file"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(str(path), "", f"malformed YAML: {where}{problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", f"expected a mapping of keys, got {type(data).__name__}")
    return data


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``a.b.c=value`` set (value parsed as YAML)."""
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError("command line", item, "expected an override like train.epochs=10")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        set_dotted(out, key, value, "command line")
    return out


def set_dotted(data: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    """Set ``a.b.c`` in nested ``data`` in place, creating missing sections."""
    node = data
    parts = dotted.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(source, dotted, f"{'.'.join(parts[: depth + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, recursively for nested mappings."""
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _choice(raw: Mapping[str, Any], key: str, allowed: list[str], source: str) -> str:
    value = raw.get(key, RunConfigBase.model_fields[key].default)
    if value not in allowed:
        raise ConfigError(
            source, key, f"unknown value {value!r}; choose one of: {', '.join(allowed)}"
        )
    return value


def resolve(raw: Mapping[str, Any], source: str = "config") -> BaseModel:
    """Fill recipe defaults and the view preset under ``raw``, then validate."""
    from sslight.methods import METHODS

    method = METHODS.get(_choice(raw, "method", METHODS.names(), source))
    backbone = backbone_spec(_choice(raw, "backbone", BACKBONES.names(), source))
    resolved = deep_merge(method.defaults.get(backbone.family, {}), raw)

    views = resolved.get("views")
    views = {} if views is None else views
    if not isinstance(views, Mapping):
        raise ConfigError(source, "views", "must be a mapping")
    policy = views.get("policy", "sslight")
    if policy in ("baseline", "sslight"):
        baseline = method.baseline_views.get(backbone.family)
        if baseline is None:
            raise ConfigError(
                source,
                "views.policy",
                f"no {policy!r} preset for {method.name} × {backbone.family}; use policy: custom "
                "and set global_crops, local_crops and loss_weights",
            )
        data = resolved.get("data")
        image_size = data.get("image_size", 224) if isinstance(data, Mapping) else 224
        try:
            image_size = _IMAGE_SIZE.validate_python(image_size)
        except ValidationError:
            image_size = 224  # validation below reports the bad value under data.image_size
        resolved["views"] = deep_merge(
            preset_views(baseline, policy, image_size, backbone.patch_size), views
        )
    resolved.setdefault("stages", list(method.default_stages))
    resolved.setdefault(
        "output_dir", f"runs/{method.name}_{backbone.name}_{resolved['views'].get('policy')}"
    )
    try:
        cfg = run_config_model().model_validate(resolved)
    except ValidationError as err:
        raise _located(err, source) from None
    if cfg.eval.network not in method.networks:
        raise ConfigError(
            source,
            "eval.network",
            f"{method.name} has no {cfg.eval.network!r} network; choose one of: "
            f"{', '.join(method.networks)}",
        )
    return cfg


def _located(err: ValidationError, source: str) -> ConfigError:
    first = err.errors()[0]
    loc = _field_path(first["loc"])
    problem = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        problem = "unknown key" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
    elif first["type"] == "missing":
        problem = "required key is missing"
    elif "input" in first and first["type"] not in ("value_error", "assertion_error"):
        problem = f"{problem} (got {first['input']!r})"
    more = len(err.errors()) - 1
    if more:
        problem += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(source, ".".join(loc) or "(top level)", problem)


def _field_path(loc: tuple) -> list[str]:
    """The user's dotted key: drop pydantic's union-member tags such as ``int`` or ``float``."""
    path: list[str] = []
    model: Any = run_config_model()
    for part in loc:
        fields = getattr(model, "model_fields", None) or {}
        if isinstance(part, str) and part in fields:
            path.append(part)
            model = fields[part].annotation
        elif not fields and isinstance(part, str) and _is_tag(part):
            continue
        else:
            path.append(str(part))
            model = None
    return path


def _is_tag(part: str) -> bool:
    return part in ("int", "float", "str", "bool", "list", "dict", "none") or "[" in part


def _allowed_keys(loc: list[str]) -> list[str]:
    model: Any = run_config_model()
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return sorted(getattr(model, "model_fields", {}))


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> BaseModel:
    """Load ``path``, apply ``key=value`` overrides, resolve and validate."""
    raw = apply_overrides(load_yaml(path), overrides)
    return resolve(raw, source=str(path))


def config_to_dict(cfg: BaseModel) -> dict[str, Any]:
    """Plain JSON-able data (what ``config.yaml`` and checkpoints store)."""
    return cfg.model_dump(mode="json")


def stable_hash(data: Any) -> str:
    """16 hex digits of the SHA-256 of ``data`` as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def config_key(cfg: BaseModel) -> str:
    """A stable 16-hex-digit hash of the resolved config."""
    return stable_hash(config_to_dict(cfg))
