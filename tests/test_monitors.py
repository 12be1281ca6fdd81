"""Learning and collapse monitors: the rule on synthetic tensors, and a run that collapses."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch

import sslight
from sslight.engine.monitors import EpochMonitor, distribution_entropies, feature_std
from sslight.methods import METHODS
from sslight.pipeline import StageError

K = 64


def _line(q: torch.Tensor, features: torch.Tensor) -> dict:
    """The epoch line a DINO-like method with targets ``q`` and eval features would produce."""
    monitor = EpochMonitor({"entropy_max": math.log(K), "collapse_loss": math.log(K)})
    monitor.update({"loss": 3.0, **{k: v.item() for k, v in distribution_entropies(q).items()}})
    return monitor.summary(features, embed_dim=features.shape[1])


def test_entropies_tell_uniform_from_one_hot_collapse():
    uniform = distribution_entropies(torch.full((8, K), 1 / K))
    same_one_hot = distribution_entropies(torch.eye(K)[torch.zeros(8, dtype=torch.long)])
    spread_one_hot = distribution_entropies(torch.eye(K))

    assert uniform["teacher_entropy"].item() == pytest.approx(math.log(K))
    assert uniform["teacher_batch_entropy"].item() == pytest.approx(math.log(K))
    assert same_one_hot["teacher_entropy"].item() == pytest.approx(0, abs=1e-6)
    assert same_one_hot["teacher_batch_entropy"].item() == pytest.approx(0, abs=1e-6)
    assert spread_one_hot["teacher_entropy"].item() == pytest.approx(0, abs=1e-6)
    assert spread_one_hot["teacher_batch_entropy"].item() == pytest.approx(math.log(K))


def test_feature_std_is_one_over_sqrt_d_when_spread_and_zero_when_constant():
    spread = torch.randn(4096, 128, generator=torch.Generator().manual_seed(0))
    assert feature_std(spread) == pytest.approx(1 / math.sqrt(128), rel=0.05)
    assert feature_std(torch.ones(32, 128) * 3.0) == pytest.approx(0.0, abs=1e-6)


def test_healthy_targets_and_features_are_not_flagged():
    generator = torch.Generator().manual_seed(0)
    q = torch.softmax(torch.randn(256, K, generator=generator) * 4, dim=1)  # sharp, varied
    line = _line(q, torch.randn(256, 32, generator=generator))

    assert line["collapse_suspected"] is False
    assert "collapse_reason" not in line
    assert line["entropy_max"] == pytest.approx(math.log(K))
    assert line["feature_std_healthy"] == pytest.approx(1 / math.sqrt(32))
    assert line["teacher_entropy"] < 0.9 * line["entropy_max"]


@pytest.mark.parametrize(
    ("q", "features", "reason"),
    [
        (torch.full((16, K), 1 / K), torch.randn(16, 32), "uniform teacher output"),
        (torch.eye(K)[torch.zeros(16, dtype=torch.long)], torch.randn(16, 32), "one dimension"),
        (torch.eye(K)[:16], torch.ones(16, 32), "constant backbone features"),
    ],
)
def test_each_kind_of_collapse_is_flagged_with_its_reason(q, features, reason):
    line = _line(q, features)
    assert line["collapse_suspected"] is True
    assert line["collapse_reason"].startswith(reason)


def test_a_loss_pinned_at_its_collapse_value_for_an_epoch_is_flagged():
    monitor = EpochMonitor({"entropy_max": math.log(K), "collapse_loss": math.log(K)})
    for loss in (math.log(K) + 0.01, math.log(K) - 0.01):  # the epoch's mean is ln K
        monitor.update({"loss": loss})
    line = monitor.summary(torch.randn(64, 32), embed_dim=32)
    assert line["collapse_suspected"] is True
    assert line["collapse_reason"].startswith("loss at its collapse value")


def test_a_method_without_a_teacher_distribution_reports_feature_std_and_loss_only():
    monitor = EpochMonitor({"collapse_loss": math.log(513)})
    monitor.update({"loss": 6.0})
    line = monitor.summary(torch.ones(8, 16), embed_dim=16)
    assert "teacher_entropy" not in line and "entropy_max" not in line
    assert line["collapse_suspected"] is True and "constant backbone" in line["collapse_reason"]
    assert line["epoch_loss"] == 6.0 and line["collapse_loss"] == pytest.approx(math.log(513))


@pytest.mark.parametrize(
    ("method", "section", "expected"),
    [
        ("dino", {"dino": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16}}, math.log(64)),
        ("swav", {"swav": {"hidden_dim": 32, "out_dim": 16, "num_prototypes": 30}}, math.log(30)),
        ("moco", {"moco": {"hidden_dim": 32, "out_dim": 16, "queue_length": 64}}, None),
    ],
)
def test_methods_state_their_collapse_reference(make_run, tmp_path, method, section, expected):
    cfg = make_run(tmp_path, method=method, **section)
    reference = METHODS.get(method).build(cfg, num_classes=4).collapse_reference()
    if expected is None:  # MoCo: InfoNCE of identical embeddings = ln(queue + 1)
        assert "entropy_max" not in reference
        assert reference["collapse_loss"] == pytest.approx(math.log(65))
    else:
        assert reference == pytest.approx({"entropy_max": expected, "collapse_loss": expected})


def _collapsing_run(make_run, tmp_path, **train):
    """A DINO run whose teacher temperature is so high that every target is uniform."""
    return make_run(
        tmp_path,
        train={"epochs": 2, **train},
        dino={"teacher_temp": 1e4, "warmup_teacher_temp": 1e4},
        stages=["pretrain"],
    )


def _epoch_lines(path) -> list[dict]:
    lines = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if line.get("type") == "epoch"]


def test_a_collapsing_run_is_flagged_and_warned_about(make_run, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="sslight.engine.epoch_end"):
        result = sslight.run(_collapsing_run(make_run, tmp_path))

    epochs = _epoch_lines(tmp_path)
    assert [line["collapse_suspected"] for line in epochs] == [True, True]
    assert epochs[0]["teacher_entropy"] == pytest.approx(math.log(64), rel=1e-3)
    assert "feature_std" in epochs[0] and "feature_std_healthy" in epochs[0]
    assert result["collapse"]["epoch"] == 0
    assert result["collapse"]["reason"].startswith("uniform teacher output")
    assert result["stages"]["pretrain"]["status"] == "done"  # flagged, not stopped
    assert "looks collapsed" in caplog.text


def test_stop_on_collapse_fails_the_stage_with_a_collapsed_message(make_run, tmp_path):
    cfg = _collapsing_run(make_run, tmp_path, stop_on_collapse=True)
    with pytest.raises(StageError, match="collapsed: uniform teacher output"):
        sslight.run(cfg)

    result = json.loads((tmp_path / "result.json").read_text())
    assert result["error"]["stage"] == "pretrain"
    assert result["error"]["message"].startswith("collapsed:")
    assert result["collapse"]["epoch"] == 0
    assert len(_epoch_lines(tmp_path)) == 1  # stopped after the first epoch
