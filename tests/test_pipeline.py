"""``sslight run``: stages in order, results recorded, finished stages skipped, failures kept."""

from __future__ import annotations

import json

import pytest

import sslight
from sslight import pipeline
from sslight.cli import main
from sslight.pipeline import StageError

EVAL = {
    "linear": {"epochs": 2, "batch_size": 16, "optimizer": "sgd", "cached_features": True},
    "semi": {"fractions": [0.25], "epochs": [1], "batch_size": 8, "max_steps_per_epoch": 1},
}
STAGES = ["pretrain", "knn", "linear", "semi_25"]


def _result(path) -> dict:
    return json.loads((path / "result.json").read_text())


def test_run_fills_result_json_with_every_stage(make_run, tmp_path):
    result = sslight.run(make_run(tmp_path, eval=EVAL, stages=STAGES))

    for key in ("knn_top1", "knn_top1_k20", "knn_top1_k200", "linear_top1", "semi_25_top1"):
        assert 0 <= result[key] <= 100, key
    assert set(result["stages"]) == set(STAGES)
    assert all(stage["status"] == "done" for stage in result["stages"].values())
    assert (tmp_path / "semi_25_subset.txt").exists()
    assert _result(tmp_path) == result


def test_a_finished_stage_is_not_run_again(make_run, tmp_path, monkeypatch):
    cfg = make_run(tmp_path, eval=EVAL, stages=["pretrain", "knn"])
    first = sslight.run(cfg)

    def must_not_run(*args):
        raise AssertionError("stage ran twice")

    monkeypatch.setitem(pipeline.STAGES._items, "pretrain", must_not_run)
    monkeypatch.setitem(pipeline.STAGES._items, "knn", must_not_run)
    assert sslight.run(cfg)["knn_top1"] == first["knn_top1"]


def test_a_failing_stage_records_its_error_and_keeps_finished_stages(
    make_run, tmp_path, monkeypatch
):
    cfg = make_run(tmp_path, eval=EVAL, stages=["pretrain", "knn", "linear"])

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setitem(pipeline.STAGES._items, "linear", broken)
    with pytest.raises(StageError, match="linear"):
        sslight.run(cfg)
    result = _result(tmp_path)
    assert result["error"]["stage"] == "linear"
    assert "disk full" in result["error"]["message"]
    assert "knn_top1" in result and result["stages"]["pretrain"]["status"] == "done"
    assert "linear" not in result["stages"]

    monkeypatch.undo()
    fixed = sslight.run(cfg)
    assert "error" not in fixed and "linear_top1" in fixed
    assert fixed["knn_top1"] == result["knn_top1"]


def test_cli_run_exits_1_on_a_failing_stage_and_2_on_an_unknown_stage(
    make_run, tmp_path, monkeypatch, capsys
):
    import yaml

    from sslight.config.load import config_to_dict

    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(config_to_dict(make_run(tmp_path / "out", stages=["pretrain"])))
    )
    assert main(["run", str(config), "stages=[pretrain,panoptic]"]) == 2
    assert "stages: unknown stage 'panoptic'" in capsys.readouterr().err

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setitem(pipeline.STAGES._items, "pretrain", broken)
    assert main(["run", str(config)]) == 1
    assert _result(tmp_path / "out")["error"]["stage"] == "pretrain"
