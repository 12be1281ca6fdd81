"""MoCo-v2: the queue loss against a per-sample loop, the queue, the key encoder, resume."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from interrupt import checkpoint_tensors, pretrain_killed_after_save

from sslight.config.load import ConfigError
from sslight.engine.metrics import read_metrics
from sslight.engine.trainer import pretrain
from sslight.methods.base import StepContext
from sslight.methods.moco import MoCo
from sslight.methods.moco_loss import MoCoLoss

D = 8
B = 3
K = 12


def reference_loss(
    queries: torch.Tensor,
    keys: torch.Tensor,
    queue: torch.Tensor,
    temperature: float,
    weights: tuple[float, float],
    n_global_queries: int = 1,
) -> tuple[float, float, float]:
    """One cross-entropy per query, written out: -log(exp(q·k⁺/T) / Σ exp(q·[k⁺, queue]/T))."""
    n_views = queries.shape[0] // B
    per_view = []
    for v in range(n_views):
        total = 0.0
        for b in range(B):
            q = queries[v * B + b] / queries[v * B + b].norm()
            k = keys[b] / keys[b].norm()
            positive = math.exp(float(q @ k) / temperature)
            negatives = sum(
                math.exp(float(q @ queue[:, j]) / temperature) for j in range(queue.shape[1])
            )
            total += -math.log(positive / (positive + negatives))
        per_view.append(total / B)
    gg = per_view[:n_global_queries]
    gl = per_view[n_global_queries:]
    mean_gg = sum(gg) / len(gg) if gg else 0.0
    mean_gl = sum(gl) / len(gl) if gl else 0.0
    return weights[0] * mean_gg + weights[1] * mean_gl, mean_gg, mean_gl


def random_embeddings(n_query_views: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    queries = torch.randn(n_query_views * B, D, generator=gen, dtype=torch.float64).float()
    keys = torch.randn(B, D, generator=gen)
    return queries, keys


GRID = list(
    itertools.product(
        [0, 2, 6],  # local query views
        [(0.4, 0.6), (1 / 7, 6 / 7), (1.0, 0.0)],  # (w_gg, w_gl)
        [0.2, 0.07],  # temperature
    )
)


@pytest.mark.parametrize(("n_locals", "weights", "temperature"), GRID)
def test_matches_per_query_loop(
    n_locals: int, weights: tuple[float, float], temperature: float
) -> None:
    queries, keys = random_embeddings(1 + n_locals, seed=n_locals)
    loss_fn = MoCoLoss(D, K, temperature)
    queue = loss_fn.queue.clone()
    loss, parts = loss_fn(queries, keys, weights)
    expected, gg, gl = reference_loss(queries, keys, queue, temperature, weights)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert parts["loss_gg"].item() == pytest.approx(gg, rel=1e-5)
    assert parts["loss_gl"].item() == pytest.approx(gl, rel=1e-5, abs=1e-6)
    if n_locals == 0:
        assert parts["loss_gl"].item() == 0.0


def test_uniform_weights_equal_the_plain_mean_over_queries() -> None:
    """The seed's MoCo baseline (1/7, 6/7 with 6 locals) is MoCo's mean CE over all 7 queries."""
    queries, keys = random_embeddings(7, seed=4)
    loss_fn = MoCoLoss(D, K, 0.2)
    q = F.normalize(queries, dim=1)
    k = F.normalize(keys, dim=1).repeat(7, 1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ loss_fn.queue.clone()], dim=1) / 0.2
    expected = F.cross_entropy(logits, torch.zeros(7 * B, dtype=torch.long))
    loss, _ = loss_fn(queries, keys, (1 / 7, 6 / 7))
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_the_queue_starts_normalised_and_is_a_fifo_that_wraps_around() -> None:
    loss_fn = MoCoLoss(D, queue_length=5)
    assert loss_fn.queue.shape == (D, 5)
    torch.testing.assert_close(loss_fn.queue.norm(dim=0), torch.ones(5))
    assert {"queue", "queue_ptr"} <= loss_fn.state_dict().keys() and not list(loss_fn.parameters())
    initial = loss_fn.queue.clone()
    first, second = torch.randn(3, D), torch.randn(3, D)

    loss_fn.enqueue(first)
    assert int(loss_fn.queue_ptr) == 3
    torch.testing.assert_close(loss_fn.queue[:, :3], first.T)
    torch.testing.assert_close(loss_fn.queue[:, 3:], initial[:, 3:])

    loss_fn.enqueue(second)  # columns 3, 4, then wraps to 0
    assert int(loss_fn.queue_ptr) == 1
    torch.testing.assert_close(loss_fn.queue[:, 3:], second[:2].T)
    torch.testing.assert_close(loss_fn.queue[:, 0], second[2])
    torch.testing.assert_close(loss_fn.queue[:, 1:3], first[1:].T)

    with pytest.raises(ValueError, match="queue_length 5 is smaller"):
        loss_fn.enqueue(torch.randn(6, D))


def test_forward_enqueues_the_normalised_keys_after_the_loss() -> None:
    queries, keys = random_embeddings(3, seed=2)
    loss_fn = MoCoLoss(D, K)
    before = loss_fn.queue.clone()
    loss, _ = loss_fn(queries, keys, (0.4, 0.6))
    expected, _, _ = reference_loss(queries, keys, before, 0.2, (0.4, 0.6))
    assert loss.item() == pytest.approx(expected, rel=1e-5)  # negatives: the queue before
    torch.testing.assert_close(loss_fn.queue[:, :B], F.normalize(keys, dim=1).T)
    assert int(loss_fn.queue_ptr) == B


def test_gradient_reaches_the_queries_only() -> None:
    queries, keys = random_embeddings(3, seed=9)
    queries.requires_grad_(True)
    keys.requires_grad_(True)
    loss, parts = MoCoLoss(D, K)(queries, keys, (0.4, 0.6))
    loss.backward()  # the queue was written in place after the loss: backward still works
    assert queries.grad is not None and queries.grad.abs().sum() > 0
    assert keys.grad is None
    assert not parts["loss_gg"].requires_grad and not parts["loss_gl"].requires_grad


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        MoCoLoss(D, K)(torch.randn(7, D), torch.randn(3, D), (0.5, 0.5))
    with pytest.raises(ValueError):
        MoCoLoss(D, K)(torch.randn(2, D), torch.randn(3, D), (0.5, 0.5))


# ---------------------------------------------------------------------------------------------
# The method: key encoder, checkpoints, the engine
# ---------------------------------------------------------------------------------------------

MOCO_TINY = {"queue_length": 32, "hidden_dim": 32, "out_dim": 16}


def tiny_moco(make_run, tmp_path, **moco) -> MoCo:
    cfg = make_run(tmp_path, method="moco", moco={**MOCO_TINY, **moco})
    method = MoCo(cfg, num_classes=10)
    method.setup(epochs=1, steps_per_epoch=4)
    return method


def tiny_views(seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    views = [torch.randn(4, 3, 32, 32, generator=gen) for _ in range(2)]
    views += [torch.randn(4, 3, 16, 16, generator=gen) for _ in range(2)]
    return views, torch.randint(0, 10, (4,), generator=gen)


def test_the_key_encoder_follows_the_momentum_update_and_gets_no_gradient(make_run, tmp_path):
    method = tiny_moco(make_run, tmp_path, momentum=0.9)
    assert all(not p.requires_grad for p in method.key_encoder.parameters())
    for k, q in zip(method.key_encoder.parameters(), method.student.parameters(), strict=True):
        assert torch.equal(k, q)
    views, labels = tiny_views()
    ctx = StepContext(epoch=0, step=0, steps_per_epoch=4)
    method.train()
    out = method(views, labels, ctx)
    out.loss.backward()
    assert all(p.grad is None for p in method.key_encoder.parameters())
    assert any(p.grad is not None for p in method.student.parameters())

    key_before = [p.clone() for p in method.key_encoder.parameters()]
    with torch.no_grad():  # stand in for the optimiser
        for p in method.student.parameters():
            p.add_(torch.randn_like(p))
    method.after_optimizer_step(ctx)
    for k, k0, q in zip(
        method.key_encoder.parameters(), key_before, method.student.parameters(), strict=True
    ):
        torch.testing.assert_close(k, 0.9 * k0 + 0.1 * q)
    assert {"loss", "loss_gg", "loss_gl", "momentum", "probe_acc"} <= out.logs.keys()
    assert out.logs["momentum"] == 0.9


def test_queue_and_key_encoder_survive_a_checkpoint_round_trip(make_run, tmp_path):
    torch.manual_seed(0)
    method = tiny_moco(make_run, tmp_path)
    method.train()
    for step in range(3):  # fill part of the queue, move the key encoder
        views, labels = tiny_views(step)
        ctx = StepContext(epoch=0, step=step, steps_per_epoch=4)
        method(views, labels, ctx).loss.backward()
        with torch.no_grad():
            for p in method.student.parameters():
                if p.grad is not None:
                    p.sub_(0.1 * p.grad)
                    p.grad = None
        method.after_optimizer_step(ctx)
    assert int(method.criterion.queue_ptr) == 12

    torch.manual_seed(123)  # a fresh instance starts from other weights and another queue
    fresh = tiny_moco(make_run, tmp_path)
    fresh.student.load_state_dict(method.student.state_dict())
    fresh.probe.load_state_dict(method.probe.state_dict())
    fresh.load_extra_state(method.extra_state())
    fresh.train()
    views, labels = tiny_views(99)
    ctx = StepContext(epoch=0, step=3, steps_per_epoch=4)
    a, b = method(views, labels, ctx), fresh(views, labels, ctx)
    assert a.loss.item() == b.loss.item() and a.logs == b.logs
    assert torch.equal(method.criterion.queue, fresh.criterion.queue)
    assert int(fresh.criterion.queue_ptr) == 16

    wrong = tiny_moco(make_run, tmp_path, queue_length=64)
    with pytest.raises(ValueError, match="queue"):
        wrong.load_extra_state(method.extra_state())


def test_a_queue_shorter_than_the_batch_is_a_config_error(make_run, tmp_path):
    with pytest.raises(ConfigError, match=r"moco\.queue_length: 4 is smaller"):
        tiny_moco(make_run, tmp_path, queue_length=4)


def test_moco_pretrains_two_steps_through_the_engine(make_run, tmp_path):
    result = pretrain(make_run(tmp_path, method="moco", moco=MOCO_TINY))
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 2
    extra = state["method_state"]
    assert extra["queue"].shape == (16, 32) and int(extra["queue_ptr"]) == 16
    assert extra["key_encoder"].keys() == state["model"].keys()
    steps = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "type" not in r]
    assert [r["step"] for r in steps] == [0, 1]
    assert all(math.isfinite(r[k]) for r in steps for k in ("loss", "loss_gg", "loss_gl"))
    assert {"momentum", "probe_loss", "probe_acc", "lr"} <= steps[0].keys()
    assert 0 <= result["monitor_knn_top1"] <= 100


@pytest.mark.slow
def test_a_moco_run_killed_mid_epoch_resumes_and_matches_an_uninterrupted_run(
    make_run, tmp_path, monkeypatch
):
    common = {
        "method": "moco",
        "moco": MOCO_TINY,
        "seed": 3,
        "eval": {"knn": {"monitor": False}},
        "train": {
            "epochs": 2,
            "max_steps_per_epoch": 3,
            "checkpoint_every_steps": 1,
            "deterministic": True,
        },
    }
    pretrain(make_run(tmp_path / "full", **common))

    crashed = make_run(tmp_path / "crashed", **common)
    pretrain_killed_after_save(crashed, 2, monkeypatch)
    state = torch.load(tmp_path / "crashed" / "checkpoints" / "last.pt", weights_only=True)
    assert (state["epoch"], state["batch"]) == (0, 2)

    pretrain(crashed)  # restart: resumes at epoch 0, batch 2
    a, b = checkpoint_tensors(tmp_path / "full"), checkpoint_tensors(tmp_path / "crashed")
    assert a.keys() == b.keys()
    # 6 steps × 8 keys into a 32-long queue: the pointer has wrapped around.
    assert int(a["method_state.queue_ptr"]) == 48 % 32
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from uninterrupted"
    steps = [
        r["step"] for r in read_metrics(tmp_path / "crashed" / "metrics.jsonl") if "type" not in r
    ]
    assert steps == list(range(6)), "each step is logged exactly once across the restart"
