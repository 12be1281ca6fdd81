"""Self-supervised methods, by config name. Adding one: a module with a ``SPEC`` and a line here."""

from sslight.methods import dino
from sslight.methods.base import MethodSpec, SSLMethod
from sslight.registry import Registry

METHODS: Registry[MethodSpec] = Registry("method")
METHODS.register("dino")(dino.SPEC)

__all__ = ["METHODS", "MethodSpec", "SSLMethod"]
