"""Optimiser groups, schedules and k-NN: the pieces the loop relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sslight.engine.knn import knn_accuracy
from sslight.engine.optim import build_optimizer, parameter_groups, set_lr_and_weight_decay
from sslight.engine.schedules import cosine_schedule, epoch_warmup_schedule
from sslight.models import build_backbone


def test_mobilenet_parameters_split_into_the_seed_repos_three_groups():
    backbone = build_backbone("mobilenet_v2")
    groups = {g["name"]: g for g in parameter_groups([backbone])}
    assert set(groups) == {"regular", "no_decay", "depthwise"}
    assert all(p.ndim == 1 for p in groups["no_decay"]["params"])
    assert all(p.ndim == 4 and p.shape[1] == 1 for p in groups["depthwise"]["params"])
    assert (groups["no_decay"]["wd_scale"], groups["no_decay"]["always_adapt"]) == (0.0, False)
    assert (groups["depthwise"]["wd_scale"], groups["depthwise"]["always_adapt"]) == (0.0, True)
    assert groups["regular"]["wd_scale"] == 1.0
    total = sum(len(g["params"]) for g in groups.values())
    assert total == len(list(backbone.parameters()))


def test_lars_leaves_1d_parameters_unadapted_and_scales_the_rest_by_the_trust_ratio():
    model = nn.Sequential(nn.Linear(4, 3))  # weight: regular group, bias: no_decay group
    optimizer = build_optimizer("lars", [model], momentum=0.0)
    set_lr_and_weight_decay(optimizer, lr=0.5, weight_decay=0.0)
    weight, bias = model[0].weight, model[0].bias
    before_w, before_b = weight.detach().clone(), bias.detach().clone()
    weight.grad, bias.grad = torch.ones_like(weight), torch.ones_like(bias)
    optimizer.step()
    assert torch.allclose(bias, before_b - 0.5)  # plain SGD step: not adapted
    trust = 0.001 * before_w.norm() / weight.grad.norm()
    assert torch.allclose(weight, before_w - 0.5 * trust * weight.grad, atol=1e-7)


def test_weight_decay_follows_each_groups_scale():
    optimizer = build_optimizer("adamw", [nn.Linear(4, 3)])
    set_lr_and_weight_decay(optimizer, lr=1e-3, weight_decay=0.04)
    decays = {g["name"]: g["weight_decay"] for g in optimizer.param_groups}
    assert decays == {"regular": 0.04, "no_decay": 0.0}


def test_cosine_schedule_warms_up_linearly_then_decays_to_the_final_value():
    values = cosine_schedule(
        1.0, 0.1, epochs=10, steps_per_epoch=10, warmup_epochs=2, warmup_start=0.2
    )
    assert len(values) == 100
    assert values[0] == pytest.approx(0.2)
    assert np.all(np.diff(values[:20]) > 0)
    assert values[20] == pytest.approx(1.0)
    assert np.all(np.diff(values[20:]) <= 0)
    assert values[-1] == pytest.approx(0.1, abs=1e-3)


def test_teacher_temperature_warms_up_per_epoch_then_stays():
    temps = epoch_warmup_schedule(0.04, 0.07, warmup_epochs=3, epochs=5)
    assert temps.tolist() == pytest.approx([0.04, 0.055, 0.07, 0.07, 0.07])
    assert epoch_warmup_schedule(0.04, 0.07, warmup_epochs=50, epochs=2)[0] == 0.04


def test_knn_matches_a_direct_weighted_vote():
    torch.manual_seed(0)
    train = nn.functional.normalize(torch.randn(50, 8), dim=1)
    train_y = torch.randint(0, 3, (50,))
    test = nn.functional.normalize(torch.randn(20, 8), dim=1)
    test_y = torch.randint(0, 3, (20,))
    got = knn_accuracy(train, train_y, test, test_y, ks=[1, 5], temperature=0.07, chunk=7)
    for k in (1, 5):
        correct = 0
        for q, y in zip(test, test_y, strict=True):
            sims = train @ q
            idx = sims.argsort(descending=True)[:k]
            votes = [
                sum(math.exp(sims[i] / 0.07) for i in idx if train_y[i] == c) for c in range(3)
            ]
            correct += int(np.argmax(votes) == int(y))
        assert got[k] == pytest.approx(100 * correct / 20)


def test_knn_separates_clustered_features():
    centers = torch.eye(4)
    labels = torch.arange(4).repeat(10)
    feats = nn.functional.normalize(centers[labels] + 0.1 * torch.randn(40, 4), dim=1)
    assert knn_accuracy(feats, labels, feats, labels, ks=[5])[5] == 100.0
