"""Self-supervised methods, by config name. Adding one: a module with a ``SPEC`` and a line here."""

from sslight.methods import dino, moco, swav
from sslight.methods.base import MethodSpec, SSLMethod
from sslight.registry import Registry

METHODS: Registry[MethodSpec] = Registry("method")
METHODS.register("dino")(dino.SPEC)
METHODS.register("moco")(moco.SPEC)
METHODS.register("swav")(swav.SPEC)

__all__ = ["METHODS", "MethodSpec", "SSLMethod"]
