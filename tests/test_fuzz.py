"""Fuzzing the config and grid loaders: whatever the YAML and the overrides, the answer is a valid
config (or grid) or one ConfigError, never another exception. ``SSLIGHT_FUZZ_EXAMPLES`` sets the
number of documents per loader (default 250)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from orchestrator.grid.spec import TOP_LEVEL_KEYS, load_grid
from sslight.config import ConfigError
from sslight.config.load import deep_merge, load_config
from sslight.config.schema import RunConfig

EXAMPLES = int(os.environ.get("SSLIGHT_FUZZ_EXAMPLES", "250"))  # per loader; more for a long hunt
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _paths(model: Any, prefix: str = "") -> list[str]:
    """Every dotted key of the run config schema (sections and leaves)."""
    out = []
    for name, field in getattr(model, "model_fields", {}).items():
        dotted = f"{prefix}{name}"
        out.append(dotted)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += _paths(annotation, dotted + ".")
    return out


KEYS = _paths(RunConfig)
WORDS = [
    "dino",
    "swav",
    "moco",
    "resnet18",
    "vit_tiny",
    "baseline",
    "sslight",
    "custom",
    "synthetic",
    "lars",
    "auto",
    "${HOME}",
    "${NOPE}",
    "$$",
    "~",
    "-",
    "[",
    "{",
    ":",
]
VALID = {"method": "dino", "backbone": "resnet18", "data": {"dataset": "synthetic"}}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
dotted_keys = st.sampled_from(KEYS) | st.text(max_size=10)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"train.epochs": 3}`` → ``{"train": {"epochs": 3}}`` where the paths do not clash."""
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = value
    return out


documents = st.one_of(
    # a valid config with a few keys changed: reaches the presets and the schema's validators
    st.dictionaries(st.sampled_from(KEYS), values, min_size=1, max_size=3)
    .map(_nest)
    .map(lambda changed: yaml.safe_dump(deep_merge(VALID, changed))),
    st.dictionaries(dotted_keys, values, max_size=8).map(_nest).map(yaml.safe_dump),
    values.map(yaml.safe_dump),
    st.text(max_size=200),  # anything at all, including broken YAML
    st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
)
overrides = st.lists(
    st.builds(lambda k, v: f"{k}={v}", dotted_keys, st.sampled_from(WORDS) | st.text(max_size=8))
    | st.text(max_size=12),
    max_size=4,
)


def _file(text: str) -> Path:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, encoding="utf-8") as f:
        f.write(text)
    return Path(f.name)


def _valid_or_config_error(load: Any, text: str, items: list[str]) -> None:
    path = _file(text)
    try:
        load(path, items)
    except ConfigError as err:
        assert str(err).strip(), "a ConfigError always says something"
    finally:
        path.unlink()


@FUZZ
@given(text=documents, items=overrides)
def test_the_config_loader_answers_a_config_or_a_config_error(text: str, items: list[str]) -> None:
    _valid_or_config_error(load_config, text, items)


def _grid_text(doc: dict[str, Any], base: dict[str, Any]) -> str:
    doc = dict(doc)
    if "base" in doc and isinstance(doc["base"], dict):
        doc["base"] = {**base, **doc["base"]}
    return yaml.safe_dump(doc)


grid_documents = st.one_of(
    # a valid config with a few keys changed: reaches the presets and the schema's validators
    st.dictionaries(st.sampled_from(KEYS), values, min_size=1, max_size=3)
    .map(_nest)
    .map(lambda changed: yaml.safe_dump(deep_merge(VALID, changed))),
    st.builds(
        _grid_text,
        st.dictionaries(st.sampled_from(TOP_LEVEL_KEYS) | st.text(max_size=6), values, max_size=6),
        st.dictionaries(dotted_keys, values, max_size=4).map(_nest),
    ),
    st.builds(
        lambda axes, exclude: yaml.safe_dump(
            {"base": {"method": "dino", "backbone": "resnet18"}, "axes": axes, "exclude": exclude}
        ),
        st.dictionaries(dotted_keys, st.lists(scalars, max_size=3), max_size=2),
        st.lists(st.dictionaries(dotted_keys, scalars, max_size=2), max_size=2),
    ),
    st.text(max_size=200),
)


@FUZZ
@given(text=grid_documents, items=overrides)
def test_the_grid_loader_answers_a_grid_or_a_config_error(text: str, items: list[str]) -> None:
    _valid_or_config_error(load_grid, text, items)
