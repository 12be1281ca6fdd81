"""DINOLoss against a plain per-pair loop of the DINO / SSLight formula."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from sslight.methods.dino_loss import DINOLoss

K = 32
B = 3


def reference_loss(
    student_out: torch.Tensor,
    teacher_out: torch.Tensor,
    center: torch.Tensor,
    n_global: int,
    student_temp: float,
    teacher_temp: float,
    weights: tuple[float, float],
) -> tuple[float, float, float]:
    """Straightforward loops: one cross-entropy per (teacher global, student view) pair."""
    students = (student_out / student_temp).chunk(student_out.shape[0] // B)
    teachers = F.softmax((teacher_out - center) / teacher_temp, dim=-1).chunk(n_global)
    gg, gl = [], []
    for iq, q in enumerate(teachers):
        for v, s in enumerate(students):
            if v == iq:
                continue
            term = 0.0
            for b in range(B):
                term += -(q[b] * F.log_softmax(s[b], dim=-1)).sum().item()
            (gg if v < n_global else gl).append(term / B)
    mean_gg = sum(gg) / len(gg) if gg else 0.0
    mean_gl = sum(gl) / len(gl) if gl else 0.0
    return weights[0] * mean_gg + weights[1] * mean_gl, mean_gg, mean_gl


def random_outputs(n_views: int, n_global: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(n_views * B, K, generator=gen) * 3
    teacher = torch.randn(n_global * B, K, generator=gen) * 3
    return student, teacher


GRID = list(
    itertools.product(
        [0, 2, 6],  # n_locals
        [(0.4, 0.6), (2 / 14, 12 / 14), (1.0, 0.0)],  # (w_gg, w_gl)
        [0.04, 0.07],  # teacher temperature
        [0.1, 0.2],  # student temperature
    )
)


@pytest.mark.parametrize(("n_locals", "weights", "teacher_temp", "student_temp"), GRID)
def test_matches_per_pair_loop(
    n_locals: int, weights: tuple[float, float], teacher_temp: float, student_temp: float
) -> None:
    student, teacher = random_outputs(2 + n_locals, seed=n_locals)
    loss_fn = DINOLoss(K, n_global=2, student_temp=student_temp)
    loss_fn.center.normal_(generator=torch.Generator().manual_seed(1))
    center = loss_fn.center.clone()
    loss, parts = loss_fn(student, teacher, teacher_temp, weights)
    expected, gg, gl = reference_loss(
        student, teacher, center, 2, student_temp, teacher_temp, weights
    )
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert parts["loss_gg"].item() == pytest.approx(gg, rel=1e-5)
    assert parts["loss_gl"].item() == pytest.approx(gl, rel=1e-5, abs=1e-6)
    if n_locals == 0:
        assert parts["loss_gl"].item() == 0.0
        assert loss.item() == pytest.approx(weights[0] * gg, rel=1e-5)


@pytest.mark.parametrize("n_global", [1, 3])
def test_other_numbers_of_globals(n_global: int) -> None:
    student, teacher = random_outputs(n_global + 2, n_global=n_global, seed=5)
    loss_fn = DINOLoss(K, n_global=n_global)
    loss, parts = loss_fn(student, teacher, 0.05, (0.3, 0.7))
    expected, gg, gl = reference_loss(
        student, teacher, torch.zeros(1, K), n_global, 0.1, 0.05, (0.3, 0.7)
    )
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert parts["loss_gg"].item() == pytest.approx(gg, rel=1e-5, abs=1e-6)
    assert parts["loss_gl"].item() == pytest.approx(gl, rel=1e-5)


def original_dino_loss(student, teacher, center, n_views, student_temp, teacher_temp):
    """facebookresearch/dino ``DINOLoss.forward``: uniform mean over all pairs v != iq."""
    student_out = (student / student_temp).chunk(n_views)
    teacher_out = F.softmax((teacher - center) / teacher_temp, dim=-1).detach().chunk(2)
    total, n_terms = 0.0, 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue
            total += torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
            n_terms += 1
    return total / n_terms


@pytest.mark.parametrize("n_locals", [6, 10])
def test_uniform_weights_equal_original_dino(n_locals: int) -> None:
    n_views = 2 + n_locals
    n_pairs = 2 * (n_views - 1)
    student, teacher = random_outputs(n_views, seed=3)
    loss_fn = DINOLoss(K)
    loss, _ = loss_fn(student, teacher, 0.04, (2 / n_pairs, (n_pairs - 2) / n_pairs))
    expected = original_dino_loss(student, teacher, torch.zeros(1, K), n_views, 0.1, 0.04)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_center_update_is_the_ema_of_the_teacher_mean() -> None:
    student, teacher = random_outputs(4, seed=7)
    loss_fn = DINOLoss(K, center_momentum=0.9)
    center = torch.randn(1, K)
    loss_fn.center.copy_(center)
    loss_fn(student, teacher, 0.04, (0.4, 0.6))
    expected = 0.9 * center + 0.1 * teacher.mean(dim=0, keepdim=True)
    torch.testing.assert_close(loss_fn.center, expected)
    assert loss_fn.center.shape == (1, K)


def test_center_starts_at_zero_and_is_a_buffer() -> None:
    loss_fn = DINOLoss(K)
    assert torch.equal(loss_fn.center, torch.zeros(1, K))
    assert "center" in loss_fn.state_dict()
    assert not list(loss_fn.parameters())


def test_gradient_reaches_the_student_only() -> None:
    student, teacher = random_outputs(4, seed=9)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    loss, parts = DINOLoss(K)(student, teacher, 0.04, (0.4, 0.6))
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
    assert not parts["loss_gg"].requires_grad and not parts["loss_gl"].requires_grad


def test_rejects_mismatched_shapes() -> None:
    loss_fn = DINOLoss(K)
    with pytest.raises(ValueError):
        loss_fn(torch.randn(7, K), torch.randn(4, K), 0.04, (0.5, 0.5))
    with pytest.raises(ValueError):
        loss_fn(torch.randn(2, K), torch.randn(4, K), 0.04, (0.5, 0.5))
