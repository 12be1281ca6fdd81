"""``sslight.registry.Registry``: names to components, and temporary registrations for tests;
every registered method's spec declares what the platform needs of it."""

from __future__ import annotations

import pytest

from sslight.config.base import StrictModel
from sslight.data.transforms import AUG_RECIPES
from sslight.methods import METHODS, SSLMethod, evaluated_network
from sslight.models.backbones import BACKBONES, backbone_spec
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


@pytest.mark.parametrize("name", METHODS.names())
def test_every_registered_method_spec_is_complete_and_builds_its_evaluated_network(
    name: str, make_run, tmp_path
) -> None:
    spec = METHODS.get(name)
    assert spec.name == name
    assert issubclass(spec.config, StrictModel) and spec.augmentation in AUG_RECIPES
    families = {backbone_spec(b).family for b in BACKBONES.names()}
    for declared in (spec.defaults, spec.baseline_views, spec.seed_prefixes):
        assert set(declared) <= families, declared
    student = spec.networks["student"]  # the default of eval.network: every method has one
    for prefix, _by_position in spec.seed_prefixes.values():
        assert prefix.startswith(student.seed_module) and prefix.endswith(".")
    assert set(spec.networks) <= {"student", "teacher"}
    assert all(n.label and n.seed_module.startswith("module.") for n in spec.networks.values())
    if "cnn" not in spec.baseline_views:
        return  # the tiny run below uses a CNN preset
    method = spec.build(make_run(tmp_path, method=name), num_classes=4)
    assert isinstance(method, SSLMethod)
    assert evaluated_network(method, "student") is method.student
    built = [evaluated_network(method, n) for n in spec.networks]
    assert len({id(network.backbone) for network in built}) == len(built)  # distinct networks
