"""The seed's evaluation protocol: the network evaluated (``eval.network``), the semi-supervised
MLP head started from the pretrained head, the cosine learning rate to ``min_lr`` held per epoch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import sslight
from sslight.config.load import ConfigError, resolve
from sslight.engine.checkpoint import load_checkpoint, save_checkpoint
from sslight.engine.rundir import RunDir
from sslight.engine.trainer import pretrain
from sslight.evaluation.classifier import classifier_lrs
from sslight.evaluation.semi_head import semi_head
from sslight.stages.knn import knn_stage
from sslight.weights.eval_backbone import load_eval_backbone, load_eval_head
from sslight.weights.export import export_run

CPU = torch.device("cpu")
EVAL = {"knn": {"k": [1], "monitor": False}, "floors": False}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """One tiny DINO pretraining, its teacher then moved far from the student."""
    from conftest import tiny_run

    run_dir = tmp_path_factory.mktemp("dino")
    pretrain(tiny_run(run_dir, eval=EVAL, stages=["pretrain", "knn"]))
    return run_dir


def _cfg(run_dir: Path, **overrides):
    from conftest import tiny_run

    from sslight.config.load import deep_merge

    return tiny_run(run_dir, **deep_merge({"eval": EVAL, "stages": ["pretrain", "knn"]}, overrides))


def _perturb_teacher(run_dir: Path) -> None:
    checkpoints = RunDir(run_dir).checkpoints
    state = load_checkpoint(checkpoints)
    teacher = state["method_state"]["teacher"]
    generator = torch.Generator().manual_seed(1)
    for key, value in teacher.items():
        if key.startswith("backbone.") and value.is_floating_point():
            value.add_(torch.randn(value.shape, generator=generator))
    save_checkpoint(state, checkpoints)


def test_every_stage_evaluates_the_student_by_default_and_a_changed_teacher_changes_nothing(
    pretrained: Path, tmp_path: Path
) -> None:
    student_cfg = _cfg(pretrained)
    assert student_cfg.eval.network == "student"  # the seed evaluates DINO's student
    before = load_eval_backbone(student_cfg, pretrained, CPU).state_dict()
    knn_before = knn_stage(student_cfg, pretrained, CPU)
    _perturb_teacher(pretrained)
    after = load_eval_backbone(student_cfg, pretrained, CPU).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert knn_stage(student_cfg, pretrained, CPU) == knn_before

    teacher_cfg = _cfg(pretrained, eval={"network": "teacher"})
    teacher = load_eval_backbone(teacher_cfg, pretrained, CPU).state_dict()
    assert not all(torch.equal(before[k], teacher[k]) for k in before)
    assert knn_stage(teacher_cfg, pretrained, CPU) != knn_before

    sidecar = json.loads(
        export_run(pretrained, tmp_path / "t.pt", teacher_cfg).with_suffix(".json").read_text()
    )
    assert (sidecar["network"], sidecar["eval_network"]) == ("teacher", "teacher")
    sidecar = json.loads(
        export_run(pretrained, tmp_path / "s.pt", student_cfg).with_suffix(".json").read_text()
    )
    assert (sidecar["network"], sidecar["eval_network"]) == ("student", "student")


def test_the_mlp_head_starts_from_the_pretrained_heads_first_two_layers(pretrained: Path) -> None:
    cfg = _cfg(pretrained, dino={"use_bn_in_head": True})  # the seed's CNN head: Linear-BN-GELU
    run_dir = pretrained.parent / "bn-head"
    cfg = cfg.model_copy(update={"output_dir": str(run_dir)})
    pretrain(cfg)
    head_state, source = load_eval_head(cfg, run_dir)
    assert "student head" in source
    head, record = semi_head("mlp", 512, 10, cfg.seed, head_state)
    assert record == {
        "head": "mlp",
        "initialised_from": {"fc1": "mlp.0", "bn1": "mlp.1", "fc2": "mlp.3", "bn2": "mlp.4"},
    }
    checkpoint = load_checkpoint(RunDir(run_dir).checkpoints)["model"]  # the student
    for ours, theirs in record["initialised_from"].items():
        for name, tensor in getattr(head, ours).state_dict().items():
            assert torch.equal(tensor, checkpoint[f"head.{theirs}.{name}"]), (ours, name)
    assert head.fc1.weight.shape == (32, 512)  # the pretrained head's width (dino.hidden_dim)
    assert head.fc3.out_features == 10

    fresh, record = semi_head("mlp", 512, 10, cfg.seed, None)
    assert record["initialised_from"] == {} and fresh.fc1.weight.shape == (2048, 512)
    linear, record = semi_head("linear", 512, 10, cfg.seed, head_state)
    assert isinstance(linear, torch.nn.Linear) and record["head"] == "linear"


def test_semi_stage_records_how_its_head_started(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        stages=["pretrain", "semi_50"],
        eval={"semi": {"fractions": [0.5], "epochs": [1], "batch_size": 8}},
        dino={"use_bn_in_head": False},  # DINO's ViT recipe: Linear-GELU-Linear-GELU-Linear
    )
    result = sslight.run(cfg)
    record = json.loads((tmp_path / "semi_50_head.json").read_text())
    # a head without batch norm: its Linear layers mlp.0 and mlp.2 start fc1 and fc2
    assert record == {"head": "mlp", "initialised_from": {"fc1": "mlp.0", "fc2": "mlp.2"}}
    assert result["stages"]["semi_50"]["network"] == "student"
    assert 0 <= result["semi_50_top1"] <= 100


@pytest.mark.parametrize("schedule", ["epoch", "step"])
def test_learning_rates_follow_the_seeds_cosine_to_min_lr(schedule: str) -> None:
    """cls_trainer.py: ``lr_schedule[steps]`` of a per-step cosine from 0.03 × 1024/256 to
    MIN_LR 1e-6, set at the start of each epoch (``epoch``), or at every step (``step``)."""
    base, floor, epochs, steps = 0.12, 1e-6, 60, 7
    lrs = classifier_lrs(base, floor, epochs, steps, schedule)
    assert len(lrs) == epochs * steps
    for epoch in (0, 1, 30, 59):
        for i in range(steps):
            at = epoch * steps + (0 if schedule == "epoch" else i)
            seed = floor + 0.5 * (base - floor) * (1 + math.cos(math.pi * at / (epochs * steps)))
            assert lrs[epoch * steps + i] == pytest.approx(seed, rel=1e-12), (epoch, i)
    assert lrs[0] == pytest.approx(base) and lrs[-1] > floor


def test_a_network_the_method_lacks_is_refused_at_its_key() -> None:
    with pytest.raises(ConfigError) as err:
        resolve({"method": "swav", "backbone": "resnet18", "eval": {"network": "teacher"}})
    assert err.value.key == "eval.network"
    assert "swav has no 'teacher' network; choose one of: student" in str(err.value)
    moco = resolve({"method": "moco", "backbone": "resnet18", "eval": {"network": "teacher"}})
    assert moco.eval.network == "teacher"  # MoCo's key encoder
