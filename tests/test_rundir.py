"""A run directory keeps the config it was started with: another config on it is bad input."""

from __future__ import annotations

import yaml

from sslight.cli import main
from sslight.config.load import config_to_dict


def _write(path, cfg) -> str:
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    return str(path)


def test_another_config_on_an_existing_run_is_refused_and_the_record_kept(
    make_run, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    first = _write(tmp_path / "first.yaml", make_run(run_dir, stages=["pretrain"]))
    assert main(["pretrain", first]) == 0
    recorded = (run_dir / "config.yaml").read_text()
    metrics = (run_dir / "metrics.jsonl").read_text()
    capsys.readouterr()

    other = make_run(run_dir, seed=5, train={"epochs": 2}, stages=["pretrain"])
    for command in ("pretrain", "run"):
        assert main([command, _write(tmp_path / "other.yaml", other)]) == 2
        err = capsys.readouterr().err
        assert f"{run_dir / 'config.yaml'}: seed, train.epochs:" in err, err
        assert str(run_dir) in err and "train.epochs: 1 -> 2" in err
        assert (run_dir / "config.yaml").read_text() == recorded
        assert (run_dir / "metrics.jsonl").read_text() == metrics
        assert "error" not in yaml.safe_load((run_dir / "result.json").read_text())


def test_the_same_config_resumes_and_logging_keys_may_change(make_run, tmp_path):
    run_dir = tmp_path / "run"
    assert (
        main(["pretrain", _write(tmp_path / "a.yaml", make_run(run_dir, stages=["pretrain"]))]) == 0
    )
    quieter = make_run(run_dir, train={"log_every_steps": 5, "progress": True}, stages=["pretrain"])
    assert main(["run", _write(tmp_path / "b.yaml", quieter)]) == 0
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["log_every_steps"] == 5
