"""Self-supervised methods, by config name. Adding one: a module with a ``SPEC`` and a line here."""

from sslight.methods import dino, moco, swav
from sslight.methods.base import EvalNetwork, MethodSpec, Network, SSLMethod
from sslight.registry import Registry

METHODS: Registry[MethodSpec] = Registry("method")
METHODS.register("dino")(dino.SPEC)
METHODS.register("moco")(moco.SPEC)
METHODS.register("swav")(swav.SPEC)


def evaluated_network(method: SSLMethod, network: str) -> Network:
    """The network (backbone + projection head) of ``method`` that ``eval.network`` = ``network``
    names in the method's spec: what k-NN, linear, semi-supervised, COCO and export take."""
    return getattr(method, METHODS.get(method.cfg.method).networks[network].attribute)


__all__ = ["METHODS", "EvalNetwork", "MethodSpec", "Network", "SSLMethod", "evaluated_network"]
