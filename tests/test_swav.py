"""SwAV: Sinkhorn-Knopp and the weighted swapped prediction against plain loops; the method's
prototype normalisation and freezing, its feature queue, and pretraining with exact resume."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from interrupt import checkpoint_tensors, pretrain_killed_after_save

from sslight.engine.metrics import read_metrics
from sslight.engine.optim import build_optimizer, set_lr_and_weight_decay
from sslight.engine.trainer import pretrain
from sslight.methods.base import StepContext
from sslight.methods.swav import SwAV
from sslight.methods.swav_loss import SwAVLoss, sinkhorn_knopp

K = 24
B = 5

# ---------------------------------------------------------------------------------------------
# Reference implementations
# ---------------------------------------------------------------------------------------------


def reference_sinkhorn(scores: np.ndarray, epsilon: float, iterations: int) -> np.ndarray:
    """SwAV's equipartition written out with loops, in float64.

    Q = exp(scores / ε)ᵀ is K × B with total mass 1; each iteration gives every prototype row mass
    1/K, then every sample column mass 1/B; the result is scaled so each sample's column sums to 1.
    """
    q = np.exp(scores.astype(np.float64) / epsilon).T
    n_prototypes, n_samples = q.shape
    q = q / q.sum()
    for _ in range(iterations):
        for k in range(n_prototypes):
            q[k, :] = q[k, :] / q[k, :].sum() / n_prototypes
        for b in range(n_samples):
            q[:, b] = q[:, b] / q[:, b].sum() / n_samples
    return (q * n_samples).T


def reference_loss(
    scores: torch.Tensor,
    n_views: int,
    temperature: float,
    epsilon: float,
    iterations: int,
    weights: tuple[float, float],
    queue_scores: torch.Tensor | None = None,
) -> tuple[float, float, float]:
    """One cross-entropy per (assigned global i, other crop v) pair, codes from the loop above."""
    crops = scores.double().chunk(n_views)
    gg, gl = [], []
    for i in range(2):
        out = crops[i].numpy()
        if queue_scores is not None:
            out = np.concatenate([queue_scores[i].double().numpy(), out])
        q = torch.from_numpy(reference_sinkhorn(out, epsilon, iterations)[-B:])
        for v in range(n_views):
            if v == i:
                continue
            term = 0.0
            for b in range(B):
                log_p = F.log_softmax(crops[v][b] / temperature, dim=-1)
                term += -(q[b] * log_p).sum().item()
            (gg if v < 2 else gl).append(term / B)
    mean_gg = sum(gg) / len(gg)
    mean_gl = sum(gl) / len(gl) if gl else 0.0
    return weights[0] * mean_gg + weights[1] * mean_gl, mean_gg, mean_gl


def original_swav_loss(scores, n_views, temperature, epsilon, iterations):
    """facebookresearch/swav ``main_swav.train``: subloss per assigned crop / (V - 1), / 2."""
    loss = 0.0
    for crop_id in (0, 1):
        out = scores[B * crop_id : B * (crop_id + 1)]
        q = sinkhorn_knopp(out, epsilon, iterations)[-B:]
        subloss = 0.0
        for v in np.delete(np.arange(n_views), crop_id):
            x = scores[B * v : B * (v + 1)] / temperature
            subloss -= torch.mean(torch.sum(q * F.log_softmax(x, dim=1), dim=1))
        loss += subloss / (n_views - 1)
    return loss / 2


def random_scores(n_views: int, seed: int = 0, rows: int = B) -> torch.Tensor:
    """Cosine-like scores in [-1, 1], as produced by normalised embeddings and prototypes."""
    gen = torch.Generator().manual_seed(seed)
    return torch.tanh(torch.randn(n_views * rows, K, generator=gen))


# ---------------------------------------------------------------------------------------------
# Sinkhorn-Knopp
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("epsilon", "iterations"), [(0.05, 3), (0.1, 1), (0.05, 10)])
def test_sinkhorn_matches_the_loop_implementation(epsilon: float, iterations: int) -> None:
    scores = random_scores(1, seed=11, rows=16)
    codes = sinkhorn_knopp(scores, epsilon, iterations)
    expected = reference_sinkhorn(scores.numpy(), epsilon, iterations)
    np.testing.assert_allclose(codes.numpy(), expected, rtol=1e-4, atol=1e-7)


def test_sinkhorn_codes_are_assignments_with_equal_prototype_mass() -> None:
    n_samples = 64
    scores = random_scores(1, seed=2, rows=n_samples)
    codes = sinkhorn_knopp(scores, 0.05, 3)
    assert codes.shape == (n_samples, K)
    assert (codes >= 0).all()
    # The last operation normalises samples: each code is a distribution over prototypes.
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(n_samples))
    # Iterated to convergence, every prototype receives the same mass B / K (equipartition).
    converged = sinkhorn_knopp(scores, 0.05, 200)
    torch.testing.assert_close(
        converged.sum(dim=0), torch.full((K,), n_samples / K), rtol=1e-3, atol=1e-4
    )
    assert not scores.requires_grad and not codes.requires_grad


def _sinkhorn_worker(rank: int, world: int, init_file: str, scores, out) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        shard = scores.chunk(world)[rank]
        out[rank].copy_(sinkhorn_knopp(shard, 0.05, 3))
    finally:
        dist.destroy_process_group()


def test_distributed_sinkhorn_equals_sinkhorn_over_the_global_batch(tmp_path) -> None:
    """Two gloo processes, half the batch each: the all-reduced sums make B the global batch."""
    import torch.multiprocessing as mp

    scores = random_scores(1, seed=4, rows=12)
    out = torch.zeros(2, 6, K).share_memory_()
    args = (2, str(tmp_path / "init"), scores, out)
    mp.start_processes(_sinkhorn_worker, args=args, nprocs=2, start_method="fork")
    torch.testing.assert_close(out.reshape(12, K), sinkhorn_knopp(scores, 0.05, 3))


# ---------------------------------------------------------------------------------------------
# The weighted swapped-prediction loss
# ---------------------------------------------------------------------------------------------

GRID = list(
    itertools.product(
        [0, 2, 6],  # n_locals
        [(0.4, 0.6), (1 / 7, 6 / 7), (1.0, 0.0)],  # (w_gg, w_gl)
        [0.1, 0.2],  # temperature
    )
)


@pytest.mark.parametrize(("n_locals", "weights", "temperature"), GRID)
def test_loss_matches_per_pair_loop(
    n_locals: int, weights: tuple[float, float], temperature: float
) -> None:
    n_views = 2 + n_locals
    scores = random_scores(n_views, seed=n_locals)
    loss_fn = SwAVLoss(n_global=2, temperature=temperature, epsilon=0.05, sinkhorn_iterations=3)
    loss, parts = loss_fn(scores, B, weights)
    expected, gg, gl = reference_loss(scores, n_views, temperature, 0.05, 3, weights)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert parts["loss_gg"].item() == pytest.approx(gg, rel=1e-5)
    assert parts["loss_gl"].item() == pytest.approx(gl, rel=1e-5, abs=1e-6)
    if n_locals == 0:
        assert parts["loss_gl"].item() == 0.0
        assert loss.item() == pytest.approx(weights[0] * gg, rel=1e-5)


@pytest.mark.parametrize("n_locals", [2, 6])
def test_uniform_weights_equal_original_swav(n_locals: int) -> None:
    n_views = 2 + n_locals
    n_pairs = 2 * (n_views - 1)
    scores = random_scores(n_views, seed=3)
    loss, _ = SwAVLoss()(scores, B, (2 / n_pairs, (n_pairs - 2) / n_pairs))
    expected = original_swav_loss(scores, n_views, 0.1, 0.05, 3)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_seed_baseline_weights_are_swavs_plain_mean() -> None:
    """The seed's LAMBDAS (1/7, 6/7) with 6 locals are exactly 2/14, 12/14: SwAV's mean."""
    scores = random_scores(8, seed=8)
    loss, _ = SwAVLoss()(scores, B, (1 / 7, 6 / 7))
    torch.testing.assert_close(loss, original_swav_loss(scores, 8, 0.1, 0.05, 3))


def test_queue_scores_join_sinkhorn_and_only_the_batch_codes_are_kept() -> None:
    scores = random_scores(4, seed=5)
    queue_scores = random_scores(2, seed=6, rows=3 * B).reshape(2, 3 * B, K)
    loss_fn = SwAVLoss()
    loss, parts = loss_fn(scores, B, (0.4, 0.6), queue_scores)
    expected, gg, _ = reference_loss(scores, 4, 0.1, 0.05, 3, (0.4, 0.6), queue_scores)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert parts["loss_gg"].item() == pytest.approx(gg, rel=1e-5)
    assert loss.item() != pytest.approx(loss_fn(scores, B, (0.4, 0.6))[0].item(), rel=1e-4)
    codes = loss_fn.codes(scores, B, queue_scores)
    assert codes.shape == (2, B, K)


def test_gradient_flows_through_the_predictions_only() -> None:
    scores = random_scores(4, seed=9).requires_grad_(True)
    loss, parts = SwAVLoss()(scores, B, (0.4, 0.6))
    loss.backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0
    assert not parts["loss_gg"].requires_grad and not parts["loss_gl"].requires_grad
    # Codes are constants: the gradient equals that of the CE with fixed targets.
    codes = SwAVLoss().codes(scores.detach(), B)
    fixed = scores.detach().clone().requires_grad_(True)
    expected, *_ = reference_loss(fixed.detach(), 4, 0.1, 0.05, 3, (0.4, 0.6))
    log_p = F.log_softmax(fixed / 0.1, dim=-1).reshape(4, B, K)
    ce = -torch.einsum("ibk,vbk->iv", codes, log_p) / B
    manual = 0.4 * (ce[0, 1] + ce[1, 0]) / 2 + 0.6 * ce[:, 2:].mean()
    manual.backward()
    torch.testing.assert_close(scores.grad, fixed.grad)
    assert manual.item() == pytest.approx(expected, rel=1e-5)


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        SwAVLoss()(torch.randn(7, K), 2, (0.5, 0.5))
    with pytest.raises(ValueError):
        SwAVLoss()(torch.randn(B, K), B, (0.5, 0.5))


# ---------------------------------------------------------------------------------------------
# The method: prototypes, freezing, queue
# ---------------------------------------------------------------------------------------------

SMALL = {"hidden_dim": 32, "out_dim": 16, "num_prototypes": 32}
BATCH = 8


def _method(make_run, tmp_path, **swav) -> SwAV:
    torch.manual_seed(0)
    cfg = make_run(tmp_path, method="swav", swav={**SMALL, **swav})
    return SwAV(cfg, num_classes=4)


def _views(seed: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    views = [torch.randn(BATCH, 3, 16, 16, generator=gen) for _ in range(2)]
    views += [torch.randn(BATCH, 3, 8, 8, generator=gen) for _ in range(2)]
    return views, torch.randint(4, (BATCH,), generator=gen)


def _train_step(method, optimizer, epoch: int, step: int, seed: int):
    ctx = StepContext(epoch, step, steps_per_epoch=100)
    views, labels = _views(seed)
    out = method(views, labels, ctx)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    method.before_optimizer_step(ctx)
    optimizer.step()
    method.after_optimizer_step(ctx)
    return out


def _optimizer(method):
    optimizer = build_optimizer("lars", method.trainable_modules())
    set_lr_and_weight_decay(optimizer, 1.0, 1e-6)
    return optimizer


def test_defaults_are_the_seed_repos(make_run, tmp_path) -> None:
    cfg = make_run(tmp_path, method="swav", views={"policy": "baseline"})
    s = cfg.swav
    assert (s.hidden_dim, s.out_dim, s.num_prototypes, s.use_bn_in_head) == (4096, 128, 3000, True)
    assert (s.temperature, s.epsilon, s.sinkhorn_iterations) == (0.1, 0.05, 3)
    assert (s.freeze_prototypes_epochs, s.queue_length, s.epoch_queue_starts) == (1, 3840, 15)
    assert cfg.train.warmup_start_lr == 0.075 and cfg.train.base_lr == 0.3
    head = SwAV(cfg, num_classes=4).student.head
    assert [type(m).__name__ for m in head.projector.mlp] == [
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Linear",
    ]
    assert head.prototypes.weight.shape == (3000, 128) and head.prototypes.bias is None


def test_vit_has_no_swav_preset(make_run, tmp_path) -> None:
    from sslight.config import ConfigError

    with pytest.raises(ConfigError, match="policy: custom"):
        make_run(tmp_path, method="swav", backbone="vit_tiny")


def test_prototypes_are_normalised_at_the_start_of_every_step(make_run, tmp_path) -> None:
    method = _method(make_run, tmp_path)
    weight = method.student.head.prototypes.weight
    with torch.no_grad():
        weight.mul_(torch.rand(weight.shape[0], 1) * 5 + 0.1)
    direction = F.normalize(weight.detach().clone(), dim=1)
    views, labels = _views(0)
    method(views, labels, StepContext(0, 0, 10))
    torch.testing.assert_close(weight.norm(dim=1), torch.ones(weight.shape[0]))
    torch.testing.assert_close(weight.detach(), direction)


def test_prototypes_are_frozen_during_the_first_epoch_only(make_run, tmp_path) -> None:
    method = _method(make_run, tmp_path)
    optimizer = _optimizer(method)
    head = method.student.head
    start = F.normalize(head.prototypes.weight.detach().clone(), dim=1)
    projector = head.projector.mlp[0].weight.detach().clone()

    for step in range(2):
        _train_step(method, optimizer, epoch=0, step=step, seed=step)
    torch.testing.assert_close(head.prototypes.weight.detach(), start, rtol=0, atol=1e-7)
    assert not torch.equal(head.projector.mlp[0].weight, projector), "the projector trains"

    _train_step(method, optimizer, epoch=1, step=2, seed=2)
    assert not torch.allclose(head.prototypes.weight, start, atol=1e-6), "prototypes train"


def test_queue_length_is_per_process_and_a_multiple_of_the_batch(make_run, tmp_path) -> None:
    method = _method(make_run, tmp_path, queue_length=3840)
    assert method.queue_length_per_process(128) == 3840  # 30 batches on one process
    assert method.queue_length_per_process(1000) == 3000
    assert _method(make_run, tmp_path, queue_length=20).queue_length_per_process(8) == 16


def test_queue_starts_at_its_epoch_fills_then_joins_the_codes(make_run, tmp_path) -> None:
    method = _method(make_run, tmp_path, queue_length=16, epoch_queue_starts=1)
    optimizer = _optimizer(method)
    active = []
    for step, epoch in enumerate([0, 0, 1, 1, 1, 1]):
        out = _train_step(method, optimizer, epoch, step, seed=step)
        active.append(out.logs["queue_active"])
        if epoch == 0:
            assert method.queue is None
        assert {"loss", "loss_gg", "loss_gl", "probe_loss", "probe_acc"} <= out.logs.keys()
    # Epoch 1 allocates a zero queue of 2 batches; it joins Sinkhorn once full (SwAV).
    assert active == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert method.queue is not None and method.queue.shape == (2, 16, 16)
    torch.testing.assert_close(method.queue.norm(dim=-1), torch.ones(2, 16))


def test_the_queue_survives_a_checkpoint_round_trip(make_run, tmp_path) -> None:
    method = _method(make_run, tmp_path, queue_length=16, epoch_queue_starts=0)
    optimizer = _optimizer(method)
    for step in range(3):
        _train_step(method, optimizer, 0, step, seed=step)
    assert method.use_queue

    path = tmp_path / "state.pt"
    torch.save({"model": method.student.state_dict(), "extra": method.extra_state()}, path)
    state = torch.load(path, weights_only=True)
    restored = _method(make_run, tmp_path, queue_length=16, epoch_queue_starts=0)
    restored.student.load_state_dict(state["model"])
    restored.probe.load_state_dict(method.probe.state_dict())
    restored.load_extra_state(state["extra"])
    assert restored.use_queue and torch.equal(restored.queue, method.queue)

    views, labels = _views(99)
    ctx = StepContext(0, 3, 100)
    a, b = method(views, labels, ctx), restored(views, labels, ctx)
    assert a.loss.item() == b.loss.item() and a.logs["queue_active"] == 1.0
    assert torch.equal(restored.queue, method.queue)


def test_sinkhorn_inputs_stay_fp32_under_bf16_autocast(make_run, tmp_path, monkeypatch) -> None:
    method = _method(make_run, tmp_path, queue_length=8, epoch_queue_starts=0)
    seen = []
    real_forward = method.criterion.forward

    def spy(scores, batch, weights, queue_scores=None):
        seen.append((scores.dtype, None if queue_scores is None else queue_scores.dtype))
        return real_forward(scores, batch, weights, queue_scores)

    monkeypatch.setattr(method.criterion, "forward", spy)
    for step in range(2):
        views, labels = _views(step)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = method(views, labels, StepContext(0, step, 10))
        assert math.isfinite(out.loss.item())
    assert seen == [(torch.float32, None), (torch.float32, torch.float32)]
    assert method.queue is not None and method.queue.dtype == torch.float32


def test_extra_state_before_the_queue_exists_round_trips(make_run, tmp_path) -> None:
    method = _method(make_run, tmp_path)
    state = method.extra_state()
    assert state["queue"].numel() == 0 and state["use_queue"] is False
    method.load_extra_state(state)
    assert method.queue is None and not method.use_queue


# ---------------------------------------------------------------------------------------------
# Pretraining through the shared engine
# ---------------------------------------------------------------------------------------------

# One batch of queue (8 rows at batch 8): filled by the first step of epoch 1, used from the second.
QUEUE = {**SMALL, "queue_length": 8, "epoch_queue_starts": 1}
TINY_IMAGES = {"image_size": 16}  # 16 px globals, 9 px locals: a ResNet18 step in ~0.1 s


def test_pretrain_runs_with_the_queue_and_logs_finite_losses(make_run, tmp_path) -> None:
    cfg = make_run(tmp_path, method="swav", swav=QUEUE, data=TINY_IMAGES, train={"epochs": 2})
    result = pretrain(cfg)
    steps = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "type" not in r]
    assert [r["step"] for r in steps] == [0, 1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in steps)
    assert {"loss", "loss_gg", "loss_gl", "queue_active", "probe_acc", "lr"} <= steps[0].keys()
    assert [r["queue_active"] for r in steps] == [0, 0, 0, 1]
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["method_state"]["queue"].shape == (2, 8, 16)
    assert state["method_state"]["use_queue"] is True
    assert "head.prototypes.weight" in state["model"]
    assert 0 <= result["monitor_knn_top1"] <= 100


def test_a_run_killed_mid_epoch_with_the_queue_resumes_exactly(
    make_run, tmp_path, monkeypatch
) -> None:
    # One epoch of 4 steps, queue on from the start (used from step 1), prototypes not frozen.
    common = {
        "method": "swav",
        "seed": 3,
        "swav": {**QUEUE, "epoch_queue_starts": 0, "freeze_prototypes_epochs": 0},
        "data": TINY_IMAGES,
        "eval": {"knn": {"monitor": False}},
        "train": {"max_steps_per_epoch": 4, "checkpoint_every_steps": 1, "deterministic": True},
    }
    pretrain(make_run(tmp_path / "full", **common))

    crashed = make_run(tmp_path / "crashed", **common)
    pretrain_killed_after_save(crashed, 3, monkeypatch)
    state = torch.load(tmp_path / "crashed" / "checkpoints" / "last.pt", weights_only=True)
    assert (state["epoch"], state["batch"]) == (0, 3)
    assert state["method_state"]["use_queue"] is True, "the kill lands with the queue in use"

    pretrain(crashed)  # restart: resumes at epoch 0, batch 3
    a, b = checkpoint_tensors(tmp_path / "full"), checkpoint_tensors(tmp_path / "crashed")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from uninterrupted"
    records = [r for r in read_metrics(tmp_path / "crashed" / "metrics.jsonl") if "type" not in r]
    full = [r for r in read_metrics(tmp_path / "full" / "metrics.jsonl") if "type" not in r]
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert [r["queue_active"] for r in records] == [0, 1, 1, 1]
    assert [r["loss"] for r in records] == [r["loss"] for r in full]
