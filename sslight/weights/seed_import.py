"""Import the backbone of a checkpoint released with the SSLight paper (``*.pth.tar``).

Those files are ``torch.save`` of ``{"config": <yacs CfgNode>, "epoch", "steps", "state_dict",
"optimizer", ...}`` where ``state_dict`` is the whole ``DistributedDataParallel`` model. The
backbone the seed repo evaluates lives under a prefix each method's spec declares
(``MethodSpec.seed_prefixes`` in sslight/methods/), e.g. ``module.student.backbone.encoder.``
for a DINO CNN (the student, which the seed's own k-NN and linear evaluations load),
``module.network.backbone.encoder.`` for SwAV, ``module.encoder_q.backbone.encoder.`` for MoCo
and ``module.student.backbone.`` for a DINO ViT (DINO's ViT names, = timm's). A CNN encoder is
``resnet.children()[:-2]`` or ``mobilenet_v2.features``: its tensors come in torchvision's order
under positional names (``encoder.4.0.conv1.weight`` for ``layer1.0.conv1.weight``), so they are
mapped by position, and each pair must agree in shape and in the last name part (``weight``,
``running_mean``...). ViT tensors are mapped by name. Files load through
:mod:`sslight.weights.safe_unpickle`: the pickled config becomes a plain dict, and nothing in the
file is executed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class SeedPrefix:
    method: str
    family: str  # "cnn" | "vit"
    prefix: str
    by_position: bool


def seed_prefixes(family: str) -> list[SeedPrefix]:
    """Where each registered method's releases keep a ``family`` backbone (its spec says)."""
    from sslight.methods import METHODS

    return [
        SeedPrefix(name, family, *METHODS.get(name).seed_prefixes[family])
        for name in METHODS.names()
        if family in METHODS.get(name).seed_prefixes
    ]


def released_name(method: str, backbone: str, policy: str) -> str:
    """The file name of the seed's release for a cell, e.g. ``dino_r18_sslight.pth.tar``: the
    released files are named ``<method>_<arch>_<policy>.pth.tar`` (README of the seed repo), with
    ``<arch>`` the backbone's ``BackboneSpec.released_as`` (its own name where it has none)."""
    from sslight.models.backbones import BACKBONES

    tag = BACKBONES.get(backbone).released_as if backbone in BACKBONES else None
    return f"{method}_{tag or backbone}_{policy}.pth.tar"


class SeedImportError(ValueError):
    """The file is not a seed checkpoint of the requested backbone."""


def is_seed_checkpoint(obj: Any) -> bool:
    """A dict whose ``state_dict`` holds a DDP model (every key starts with ``module.``)."""
    state = obj.get("state_dict") if isinstance(obj, Mapping) else None
    return (
        isinstance(state, Mapping)
        and bool(state)
        and all(isinstance(k, str) and k.startswith("module.") for k in state)
    )


def _seed_config_value(config: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(config, Mapping):
            return None
        config = config.get(part)
    return config


def network_prefix(layout: SeedPrefix, network: str) -> str:
    """Where a release keeps the backbone of ``network`` (``eval.network``): the student's prefix
    with the student's module swapped for ``network``'s (``module.teacher.`` for DINO's)."""
    from sslight.methods import METHODS

    networks = METHODS.get(layout.method).networks
    if network not in networks:
        raise SeedImportError(
            f"a {layout.method} release has no {network!r} network (it has: {', '.join(networks)})"
        )
    student, chosen = networks["student"].seed_module, networks[network].seed_module
    return chosen + layout.prefix.removeprefix(student)


def import_seed_backbone(
    checkpoint: Mapping[str, Any],
    backbone: str,
    target: Mapping[str, torch.Tensor],
    network: str = "student",
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The backbone tensors of ``network`` in a loaded seed checkpoint, renamed to ``target``'s
    keys (the state dict of our ``backbone``), and a report of what was loaded and what was
    not."""
    from sslight.models.backbones import backbone_spec

    family = backbone_spec(backbone).family
    config = checkpoint.get("config")
    arch = _seed_config_value(config, "MODEL", "BACKBONE_ARCH")
    if isinstance(arch, str) and arch != backbone:
        raise SeedImportError(f"the file was trained with backbone {arch!r}, not {backbone!r}")
    state: Mapping[str, Any] = checkpoint["state_dict"]
    candidates = seed_prefixes(family)
    found = [p for p in candidates if any(k.startswith(p.prefix) for k in state)]
    if not found:
        seen = sorted({".".join(k.split(".")[:3]) for k in state})
        wanted = ", ".join(p.prefix for p in candidates)
        raise SeedImportError(
            f"no {family.upper()} backbone in its state_dict (looked for {wanted}; "
            f"found {', '.join(seen[:8])})"
        )
    layout = found[0]
    prefix = network_prefix(layout, network)
    source = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not source:
        raise SeedImportError(f"no {network} backbone in its state_dict (looked for {prefix})")
    mapped = _by_position(source, target) if layout.by_position else _by_name(source, target)
    unused = [] if layout.by_position else sorted(set(source) - set(mapped))
    rest = Counter(".".join(k.split(".")[:2]) for k in state if not k.startswith(prefix))
    report = {
        "kind": "seed checkpoint",
        "method": layout.method,
        "network": prefix.removesuffix("."),
        "tensors_loaded": len(mapped),
        "backbone_tensors_unused": unused,
        "not_loaded": dict(sorted(rest.items())),
        "seed_config": {
            "SSL_METHOD": _seed_config_value(config, "SSL_METHOD"),
            "BACKBONE_ARCH": arch,
            "epoch": checkpoint.get("epoch"),
        },
    }
    return mapped, report


def _check_shape(name: str, source_name: str, value: Any, expected: torch.Tensor) -> None:
    if not isinstance(value, torch.Tensor):
        raise SeedImportError(f"{source_name} is a {type(value).__name__}, not a tensor")
    if tuple(value.shape) != tuple(expected.shape):
        raise SeedImportError(
            f"{source_name} has shape {list(value.shape)} but {name} needs "
            f"{list(expected.shape)}: the file holds a different architecture"
        )


def _by_position(
    source: Mapping[str, Any], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    if len(source) != len(target):
        raise SeedImportError(
            f"the encoder has {len(source)} tensors but the backbone has {len(target)}: "
            "the file holds a different architecture"
        )
    mapped = {}
    for (source_name, value), (name, expected) in zip(source.items(), target.items(), strict=True):
        if source_name.rsplit(".", 1)[-1] != name.rsplit(".", 1)[-1]:
            raise SeedImportError(
                f"tensor order differs: {source_name} lines up with {name}; "
                "the file holds a different architecture"
            )
        _check_shape(name, source_name, value, expected)
        mapped[name] = value
    return mapped


def _by_name(
    source: Mapping[str, Any], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    missing = [name for name in target if name not in source]
    if missing:
        raise SeedImportError(
            f"{len(missing)} backbone tensors are missing from the file: {', '.join(missing[:5])}"
        )
    mapped = {}
    for name, expected in target.items():
        _check_shape(name, name, source[name], expected)
        mapped[name] = source[name]
    return mapped


def import_seed_head(checkpoint: Mapping[str, Any], network: str = "student") -> dict[str, Any]:
    """The projection head MLP of ``network`` in a loaded seed checkpoint, under our names
    (``mlp.0.weight``...; the seed's DINOHead numbers its layers as ours); empty when the release
    has none."""
    from sslight.methods import METHODS

    state: Mapping[str, Any] = checkpoint["state_dict"]
    for layout in seed_prefixes("cnn") + seed_prefixes("vit"):
        if any(k.startswith(layout.prefix) for k in state):
            network_prefix(layout, network)  # the release's method has this network
            prefix = METHODS.get(layout.method).networks[network].seed_module + "head."
            return {
                k[len(prefix) :]: v
                for k, v in state.items()
                if k.startswith(prefix + "mlp.") and isinstance(v, torch.Tensor)
            }
    return {}
