"""Evaluation floors: a random-init backbone and raw pixels, scored like the pretrained one."""

from __future__ import annotations

import json

import pytest
import torch

import sslight
from sslight import pipeline
from sslight.evaluation import floors
from sslight.evaluation.floors import cache_dir, cached_top1, floor_backbone

KNN_FLOORS = {"knn_floor_random_top1", "knn_floor_pixels_top1"}
LINEAR_FLOORS = {"linear_floor_random_top1", "linear_floor_pixels_top1"}
EVAL = {"linear": {"epochs": 1, "batch_size": 16, "optimizer": "sgd", "cached_features": True}}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test starts from an empty floor cache."""
    monkeypatch.setenv("SSLIGHT_CACHE", str(tmp_path / "cache"))


def test_knn_and_linear_stages_report_both_floors_and_cache_them(make_run, tmp_path, monkeypatch):
    cfg = make_run(tmp_path, eval=EVAL, stages=["pretrain", "knn", "linear"])
    result = sslight.run(cfg)

    for key in KNN_FLOORS | LINEAR_FLOORS:
        assert 0 <= result[key] <= 100, key
    assert len(list(cache_dir().glob("*.json"))) == 4

    def must_not_evaluate(kind, cfg):
        raise AssertionError(f"the {kind} floor was computed again instead of read from the cache")

    monkeypatch.setattr(floors, "floor_backbone", must_not_evaluate)
    again = {}  # the evaluation stages once more, as another cell of the same grid would run them
    for stage in ("knn", "linear"):
        again.update(pipeline.STAGES.get(stage)(cfg, tmp_path, torch.device("cpu")))
    assert {k: again[k] for k in KNN_FLOORS | LINEAR_FLOORS} == {
        k: result[k] for k in KNN_FLOORS | LINEAR_FLOORS
    }


def test_floors_can_be_switched_off(make_run, tmp_path):
    result = sslight.run(make_run(tmp_path, eval={"floors": False}, stages=["pretrain", "knn"]))
    assert "knn_top1" in result
    assert not KNN_FLOORS & set(result)


def test_the_random_floor_is_a_seeded_eval_mode_backbone_with_initial_bn_statistics(
    make_run, tmp_path
):
    cfg = make_run(tmp_path)
    first, second = floor_backbone("random", cfg), floor_backbone("random", cfg)

    assert not first.training
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    bn = first.bn1
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    pixels = floor_backbone("pixels", cfg)
    assert pixels(torch.zeros(2, 3, 32, 32)).shape == (2, pixels.embed_dim) == (2, 3 * 32 * 32)


def test_a_torn_cache_file_is_recomputed_and_replaced(tmp_path):
    key = {"protocol": "knn", "kind": "pixels"}
    assert cached_top1(key, lambda: 42.0) == 42.0
    (path,) = cache_dir().glob("*.json")
    path.write_text('{"key": {"protoc')  # a file cut short

    assert cached_top1(key, lambda: 43.0) == 43.0
    assert json.loads(path.read_text()) == {"key": key, "top1": 43.0}
    assert not list(cache_dir().glob(".*.tmp"))  # no temporary files left behind


def test_a_different_key_is_not_served_from_the_cache(tmp_path):
    assert cached_top1({"seed": 0}, lambda: 10.0) == 10.0
    assert cached_top1({"seed": 1}, lambda: 20.0) == 20.0
    assert cached_top1({"seed": 0}, lambda: pytest.fail("recomputed")) == 10.0
