"""Backbones, multi-crop forward and the DINO head, on tiny CPU tensors."""

from __future__ import annotations

import copy
import io
import socket

import pytest
import torch

from sslight.models import (
    BACKBONES,
    DINOHead,
    backbone_spec,
    build_backbone,
    forward_multicrop,
    resolution_groups,
)

# The paper's backbones and their facts (Tan et al., ICLR 2023); a registry may hold more.
PAPER_BACKBONES = {
    "mobilenet_v2": ("cnn", 1280, None),
    "resnet18": ("cnn", 512, None),
    "resnet34": ("cnn", 512, None),
    "vit_tiny": ("vit", 192, 16),
}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a backbone tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_registry_holds_the_papers_backbones() -> None:
    assert set(PAPER_BACKBONES) <= set(BACKBONES.names())
    for name, (family, dim, patch) in PAPER_BACKBONES.items():
        spec = backbone_spec(name)
        assert (spec.name, spec.family, spec.embed_dim, spec.patch_size) == (
            name,
            family,
            dim,
            patch,
        )


def test_unknown_backbone_lists_allowed_names() -> None:
    with pytest.raises(KeyError) as err:
        build_backbone("resnet50")
    message = str(err.value)
    assert "resnet50" in message
    for name in BACKBONES.names():
        assert name in message


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_builds_offline_and_maps_to_embed_dim(name: str, offline: None) -> None:
    torch.manual_seed(0)
    model = build_backbone(name, drop_path_rate=0.1).eval()
    spec = backbone_spec(name)
    family, dim = spec.family, spec.embed_dim
    assert (model.name, model.family, model.embed_dim) == (name, family, dim)
    with torch.no_grad():
        for size in (32, 16):
            assert model(torch.randn(2, 3, size, size)).shape == (2, dim)


def test_vit_accepts_any_multiple_of_the_patch(offline: None) -> None:
    model = build_backbone("vit_tiny").eval()
    with torch.no_grad():
        for size in (48, 96):
            assert model(torch.randn(1, 3, size, size)).shape == (1, 192)


def test_vit_drop_path_rate_reaches_timm(offline: None) -> None:
    model = build_backbone("vit_tiny", drop_path_rate=0.2)
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)


def test_backbones_keep_upstream_key_names(offline: None) -> None:
    assert "features.0.0.weight" in build_backbone("mobilenet_v2").state_dict()
    resnet_keys = build_backbone("resnet18").state_dict()
    assert "layer1.0.conv1.weight" in resnet_keys
    assert not any(k.startswith("fc.") for k in resnet_keys)
    vit_keys = build_backbone("vit_tiny").state_dict()
    assert {"cls_token", "pos_embed", "blocks.0.attn.qkv.weight"} <= set(vit_keys)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_export_layout_covers_its_backbone_exactly(name: str) -> None:
    spec = backbone_spec(name)
    model = build_backbone(name)
    assert spec.family in ("cnn", "vit") and (spec.patch_size is None) == (spec.family == "cnn")
    prefix = spec.layout.prefix
    reference = spec.layout.build().state_dict()
    ours = {key.removeprefix(prefix) for key in model.state_dict()}
    assert ours == set(reference), "the export layout must cover the backbone exactly"


def test_specs_carry_what_other_modules_used_to_list() -> None:
    """channels_last, detection feature maps and release tags, as measured / released."""
    from sslight.config.schema import TrainConfig
    from sslight.engine.runtime import Runtime
    from sslight.models.backbones import detection_backbones
    from sslight.weights.seed_import import released_name

    assert detection_backbones() == ["mobilenet_v2", "resnet18", "resnet34"]
    auto = TrainConfig(device="cpu", channels_last="auto")
    assert [Runtime.from_config(auto, n).channels_last for n in PAPER_BACKBONES] == [
        True,
        False,
        False,
        False,
    ]
    names = [released_name("dino", n, "sslight") for n in PAPER_BACKBONES]
    assert names == [f"dino_{tag}_sslight.pth.tar" for tag in ("mnv2", "r18", "r34", "vitt16")]
    assert released_name("dino", "unknown_net", "baseline") == "dino_unknown_net_baseline.pth.tar"


def test_resolution_groups_are_consecutive_runs() -> None:
    views = [torch.zeros(1, 3, s, s) for s in (32, 32, 16, 16, 16, 32)]
    assert resolution_groups(views) == [(0, 2), (2, 5), (5, 6)]


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_forward_multicrop_matches_per_view_forwards(name: str, channels_last: bool) -> None:
    torch.manual_seed(0)
    model = build_backbone(name).eval()
    views = [torch.randn(2, 3, 32, 32) for _ in range(2)]
    views += [torch.randn(2, 3, 16, 16) for _ in range(3)]
    calls: list[tuple[int, ...]] = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    with torch.no_grad():
        batched = forward_multicrop(model, views, channels_last=channels_last)
        assert calls == [(4, 3, 32, 32), (6, 3, 16, 16)]
        reference = torch.cat([model(v) for v in views])
    handle.remove()
    assert batched.shape == (10, model.embed_dim)
    torch.testing.assert_close(batched, reference, atol=1e-5, rtol=1e-4)


def test_forward_multicrop_single_view_and_empty() -> None:
    model = torch.nn.Flatten()
    view = torch.randn(2, 3, 4, 4)
    assert torch.equal(forward_multicrop(model, [view]), view.flatten(1))
    with pytest.raises(ValueError):
        forward_multicrop(model, [])


@pytest.mark.parametrize("use_bn", [False, True])
@pytest.mark.parametrize("nlayers", [1, 3])
def test_dino_head_shape(use_bn: bool, nlayers: int) -> None:
    head = DINOHead(16, 64, use_bn=use_bn, nlayers=nlayers, hidden_dim=32, bottleneck_dim=8)
    assert head(torch.randn(4, 16)).shape == (4, 64)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in head.modules()) == (
        use_bn and nlayers > 1
    )


@pytest.mark.parametrize("norm_last_layer", [True, False])
def test_dino_head_weight_norm_magnitude(norm_last_layer: bool) -> None:
    head = DINOHead(16, 64, norm_last_layer=norm_last_layer, hidden_dim=32, bottleneck_dim=8)
    g = head.last_layer.parametrizations.weight.original0
    assert g.shape == (64, 1)
    assert torch.all(g == 1)
    assert g.requires_grad is (not norm_last_layer)
    # With g == 1 every output unit's weight row has unit norm.
    rows = head.last_layer.weight.norm(dim=1)
    torch.testing.assert_close(rows, torch.ones(64))
    head(torch.randn(4, 16)).sum().backward()
    assert (g.grad is not None) is (not norm_last_layer)
    assert head.last_layer.parametrizations.weight.original1.grad is not None


def test_dino_head_init() -> None:
    torch.manual_seed(0)
    head = DINOHead(64, 32, hidden_dim=256, bottleneck_dim=16)
    linears = [m for m in head.mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3
    for lin in linears:
        assert torch.all(lin.bias == 0)
        # DINO's trunc_normal_(std=.02) truncates at ±2 absolute, i.e. effectively normal.
        assert lin.weight.abs().max() <= 2.0
        assert lin.weight.std().item() == pytest.approx(0.02, rel=0.2)


def test_dino_head_deepcopy_and_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    head = DINOHead(16, 64, use_bn=True, hidden_dim=32, bottleneck_dim=8).eval()
    x = torch.randn(4, 16)
    teacher = copy.deepcopy(head)
    torch.testing.assert_close(teacher(x), head(x))
    teacher.last_layer.parametrizations.weight.original1.data.add_(1.0)
    assert not torch.allclose(teacher(x), head(x))  # independent parameters

    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = DINOHead(16, 64, use_bn=True, hidden_dim=32, bottleneck_dim=8).eval()
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh(x), head(x))
