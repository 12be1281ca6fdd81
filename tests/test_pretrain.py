"""End-to-end pretraining on tiny synthetic images: the run directory, resume, failure modes."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from interrupt import checkpoint_tensors, pretrain_killed_after_save

from sslight.engine.checkpoint import CheckpointError
from sslight.engine.metrics import read_metrics
from sslight.engine.train_one_epoch import NonFiniteLossError
from sslight.engine.trainer import pretrain


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet18", "resnet34", "vit_tiny"])
def test_each_backbone_pretrains_two_steps_and_writes_the_run_directory(
    make_run, tmp_path, backbone
):
    cfg = make_run(tmp_path, backbone=backbone)
    result = pretrain(cfg)

    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["backbone"] == backbone
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 2
    assert isinstance(state["config"], dict) and state["config"]["backbone"] == backbone
    assert state["model"].keys() == {f"backbone.{k}" for k in _backbone_keys(backbone)} | {
        k for k in state["model"] if k.startswith("head.")
    }
    steps = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "type" not in r]
    assert [r["step"] for r in steps] == [0, 1]
    assert all(math.isfinite(r["loss"]) for r in steps)
    assert {"loss_gg", "loss_gl", "lr", "teacher_temp", "probe_acc"} <= steps[0].keys()
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert 0 <= result["monitor_knn_top1"] <= 100


def _backbone_keys(name: str) -> set[str]:
    from sslight.models import build_backbone

    return set(build_backbone(name).state_dict())


def test_the_teacher_follows_the_student_by_ema_and_the_last_layer_is_frozen_in_epoch_one(
    make_run, tmp_path, monkeypatch
):
    from sslight.methods.dino import DINO

    initial = {}
    real_setup = DINO.setup

    def remember_initial_weights(self, epochs, steps_per_epoch):
        initial.update({k: v.clone() for k, v in self.student.state_dict().items()})
        real_setup(self, epochs, steps_per_epoch)

    monkeypatch.setattr(DINO, "setup", remember_initial_weights)
    pretrain(make_run(tmp_path, backbone="resnet18"))
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    student, teacher = state["model"], state["method_state"]["teacher"]

    last_layer = [k for k in student if k.startswith("head.last_layer.")]
    assert last_layer and all(torch.equal(student[k], initial[k]) for k in last_layer)
    moved = [k for k in student if k.startswith("backbone.layer") and k.endswith("weight")]
    assert any(not torch.equal(student[k], initial[k]) for k in moved), "the student trains"
    lagging = [k for k in moved if not torch.equal(student[k], teacher[k])]
    assert lagging, "the EMA teacher lags the student"
    for k in lagging[:3]:  # and lies between its start and the student
        assert (teacher[k] - initial[k]).norm() < (student[k] - initial[k]).norm()


def test_a_run_killed_mid_epoch_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(
    make_run, tmp_path, monkeypatch
):
    common = {
        "seed": 3,
        "train": {
            "epochs": 2,
            "max_steps_per_epoch": 3,
            "checkpoint_every_steps": 1,
            "deterministic": True,
        },
    }
    full = make_run(tmp_path / "full", **common)
    pretrain(full)

    crashed = make_run(tmp_path / "crashed", **common)
    pretrain_killed_after_save(crashed, 2, monkeypatch)  # after step 2 of epoch 1: mid-epoch
    state = torch.load(tmp_path / "crashed" / "checkpoints" / "last.pt", weights_only=True)
    assert (state["epoch"], state["batch"]) == (0, 2)

    pretrain(crashed)  # restart: resumes at epoch 0, batch 2
    a, b = checkpoint_tensors(tmp_path / "full"), checkpoint_tensors(tmp_path / "crashed")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from uninterrupted"
    steps = [
        r["step"] for r in read_metrics(tmp_path / "crashed" / "metrics.jsonl") if "type" not in r
    ]
    assert steps == list(range(6)), "each step is logged exactly once across the restart"


def test_a_corrupt_last_checkpoint_falls_back_to_the_previous_one(make_run, tmp_path):
    cfg = make_run(tmp_path, train={"epochs": 2, "checkpoint_every_steps": 1})
    pretrain(cfg)
    ckpt = tmp_path / "checkpoints"
    assert (ckpt / "prev.pt").exists()
    (ckpt / "last.pt").write_bytes((ckpt / "last.pt").read_bytes()[:100])  # truncated write
    result = pretrain(cfg)
    assert result["pretrain_epochs"] == 2

    for name in ("last.pt", "prev.pt"):
        (ckpt / name).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="refusing to restart from scratch"):
        pretrain(cfg)


def test_a_non_finite_loss_stops_training_with_a_clear_error(make_run, tmp_path, monkeypatch):
    from sslight.methods.dino import DINO

    real_step = DINO.training_step

    def poisoned(self, views, labels, ctx):
        out = real_step(self, views, labels, ctx)
        out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(DINO, "training_step", poisoned)
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 1, step 0"):
        pretrain(make_run(tmp_path))


def test_a_sigkilled_process_resumes_and_finishes_like_an_uninterrupted_run(make_run, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from sslight.config.load import config_to_dict

    settings = {
        "seed": 5,
        "train": {
            "epochs": 2,
            "max_steps_per_epoch": 4,
            "checkpoint_every_steps": 1,
            "deterministic": True,
        },
    }
    pretrain(make_run(tmp_path / "full", **settings))
    config = tmp_path / "killed.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(make_run(tmp_path / "killed", **settings))))
    command = [sys.executable, "-m", "sslight.cli", "pretrain", str(config)]

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    step = 0
    while time.time() < deadline and process.poll() is None:
        if last.exists():
            try:
                step = torch.load(last, weights_only=True)["step"]
            except Exception:
                step = 0  # caught mid-replace; look again
            if step >= 3:
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 3 <= step < 8, f"the kill should land mid-run, got step {step}"

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr
    a, b = checkpoint_tensors(tmp_path / "full"), checkpoint_tensors(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
