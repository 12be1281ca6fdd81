"""Learning and collapse monitors, one line per epoch in ``metrics.jsonl``.

A self-supervised run can "train" to a constant: DINO's teacher collapses to a uniform output
(loss pinned at ln K) or to one dimension (Caron et al., ICCV 2021, Sec. 5.3), every method's
backbone can collapse to one feature vector (Chen & He, CVPR 2021, Sec. 4.1). Three signals,
all nearly free:

- ``teacher_entropy``: mean entropy of the teacher's per-sample target distribution (DINO's
  centred, sharpened softmax; SwAV's Sinkhorn codes), logged by the method's steps and averaged
  over the epoch, against ``entropy_max`` = ln K. Near ln K: uniform collapse.
  ``teacher_batch_entropy``, the entropy of the batch-mean distribution, near 0: one-hot collapse
  (every sample picks the same dimension).
- ``feature_std``: per-dimension std of the L2-normalised features of the evaluated backbone (in
  eval mode, on the k-NN monitor's training images), against ``feature_std_healthy`` = 1/√d, the
  value for features spread over the sphere. Near 0: every image maps to the same vector.
- ``epoch_loss`` (the epoch's mean) against ``collapse_loss``, the loss of a collapsed output
  (DINO and SwAV: ln K, reached whenever the student's prediction is uniform; MoCo: ln(queue + 1),
  reached when every embedding is alike). Within 0.5 % of it for a whole epoch: not learning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

# Step-log keys a method with a teacher distribution writes (see ``distribution_entropies``).
TEACHER_ENTROPY = "teacher_entropy"
TEACHER_BATCH_ENTROPY = "teacher_batch_entropy"


class RunCollapsed(RuntimeError):
    """``train.stop_on_collapse`` ended the run; the message starts with ``collapsed:``."""

    def __init__(self, epoch: int, reason: str) -> None:
        self.epoch, self.reason = epoch, reason
        super().__init__(f"collapsed: {reason} (epoch {epoch})")


@torch.no_grad()
def distribution_entropies(q: Tensor) -> dict[str, Tensor]:
    """Entropies (nats) of probability rows ``q`` ``[..., K]``: the mean per-sample entropy and the
    entropy of the mean distribution. Both ln K when uniform; per-sample 0 and batch 0 when every
    row is the same one-hot; per-sample 0 and batch ln K for one-hot rows spread evenly."""
    rows = q.detach().float().reshape(-1, q.shape[-1])
    mean = rows.mean(dim=0)
    per_sample = -(rows * rows.clamp_min(1e-12).log()).sum(dim=1).mean()
    batch = -(mean * mean.clamp_min(1e-12).log()).sum()
    return {TEACHER_ENTROPY: per_sample, TEACHER_BATCH_ENTROPY: batch}


@torch.no_grad()
def feature_std(features: Tensor) -> float:
    """Mean per-dimension std of L2-normalised ``features`` ``[N, d]`` (SimSiam's monitor):
    about 1/√d when spread over the sphere, 0 when every sample has the same features."""
    normalised = torch.nn.functional.normalize(features.float(), dim=1)
    return float(normalised.std(dim=0).mean())


@dataclass(frozen=True)
class CollapseRule:
    """Thresholds, as fractions of the healthy or maximum value, past which an epoch looks
    collapsed."""

    uniform_entropy: float = 0.99  # teacher_entropy ≥ this × ln K
    one_hot_batch_entropy: float = 0.05  # teacher_batch_entropy ≤ this × ln K
    feature_std: float = 0.05  # feature_std ≤ this × 1/√d
    loss: float = 0.005  # |epoch_loss − collapse_loss| ≤ this × collapse_loss

    def reason(self, line: dict[str, Any]) -> str | None:
        """Why the epoch ``line`` looks collapsed, or None."""
        h_max = line.get("entropy_max")
        h = line.get(TEACHER_ENTROPY)
        h_batch = line.get(TEACHER_BATCH_ENTROPY)
        std, healthy = line.get("feature_std"), line.get("feature_std_healthy")
        loss = _loss_text(line)
        if h_max and h is not None and h >= self.uniform_entropy * h_max:
            return f"uniform teacher output (entropy {h:.3f} of ln K = {h_max:.3f}{loss})"
        if h_max and h_batch is not None and h_batch <= self.one_hot_batch_entropy * h_max:
            return (
                f"one dimension dominates the teacher "
                f"(batch entropy {h_batch:.3f} of ln K = {h_max:.3f}{loss})"
            )
        if std is not None and healthy and std <= self.feature_std * healthy:
            return (
                f"constant backbone features "
                f"(std {std:.2g}, healthy 1/sqrt(d) = {healthy:.2g}{loss})"
            )
        collapsed, epoch_loss = line.get("collapse_loss"), line.get("epoch_loss")
        if (
            collapsed
            and epoch_loss is not None
            and abs(epoch_loss - collapsed) <= self.loss * collapsed
        ):
            return f"loss at its collapse value ({loss.removeprefix('; ')})"
        return None


def _loss_text(line: dict[str, Any]) -> str:
    loss, collapsed = line.get("epoch_loss"), line.get("collapse_loss")
    if loss is None or collapsed is None:
        return ""
    return f"; loss {loss:.3f}, collapse value {collapsed:.3f}"


@dataclass
class EpochMonitor:
    """Averages the steps' loss and teacher entropies over an epoch and judges the epoch.

    ``reference`` is the method's ``collapse_reference()``: ``entropy_max`` (absent without a
    teacher distribution) and ``collapse_loss``.
    """

    reference: dict[str, float]
    rule: CollapseRule = field(default_factory=CollapseRule)
    _sums: dict[str, float] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def update(self, logs: dict[str, float]) -> None:
        for key in ("loss", TEACHER_ENTROPY, TEACHER_BATCH_ENTROPY):
            value = logs.get(key)
            if value is not None and math.isfinite(value):
                self._sums[key] = self._sums.get(key, 0.0) + value
                self._counts[key] = self._counts.get(key, 0) + 1

    def summary(self, features: Tensor | None, embed_dim: int) -> dict[str, Any]:
        """The epoch line's monitor fields (resetting the averages for the next epoch).

        ``features`` are the evaluated backbone's features on the monitor's images, or None when
        the k-NN monitor did not run this epoch (then no ``feature_std``)."""
        means = {key: self._sums[key] / self._counts[key] for key in self._sums}
        self._sums, self._counts = {}, {}
        line: dict[str, Any] = {
            "epoch_loss": means.get("loss"),
            "collapse_loss": self.reference.get("collapse_loss"),
            "feature_std_healthy": 1 / math.sqrt(embed_dim),
        }
        if "entropy_max" in self.reference:
            line["entropy_max"] = self.reference["entropy_max"]
            line[TEACHER_ENTROPY] = means.get(TEACHER_ENTROPY)
            line[TEACHER_BATCH_ENTROPY] = means.get(TEACHER_BATCH_ENTROPY)
        if features is not None and features.shape[0] > 1:
            line["feature_std"] = feature_std(features)
        line = {key: value for key, value in line.items() if value is not None}
        reason = self.rule.reason(line)
        line["collapse_suspected"] = reason is not None
        if reason is not None:
            line["collapse_reason"] = reason
        return line
