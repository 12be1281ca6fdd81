"""``sslight.registry.Registry``: names to components, and temporary registrations for tests."""

from __future__ import annotations

import pytest

from sslight.registry import Registry


def test_a_temporary_registration_is_gone_after_the_block_even_on_error() -> None:
    registry: Registry[int] = Registry("number")
    registry.register("one")(1)
    with registry.temporarily("two", 2) as two:
        assert two == 2 and registry.get("two") == 2
        assert registry.names() == ["one", "two"]
    assert "two" not in registry and registry.names() == ["one"]
    with pytest.raises(RuntimeError), registry.temporarily("three", 3):
        raise RuntimeError("the test body failed")
    assert "three" not in registry


def test_a_name_is_registered_once_and_unknown_names_list_the_known_ones() -> None:
    registry: Registry[int] = Registry("number")
    registry.register("one")(1)
    with pytest.raises(ValueError, match="number 'one' is registered twice"):
        registry.temporarily("one", 10).__enter__()
    assert registry.get("one") == 1
    with pytest.raises(KeyError, match="unknown number 'two'; choose one of: one"):
        registry.get("two")
