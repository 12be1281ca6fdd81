"""Registry runs → table rows: cells grouped by the grid's axes and aggregated over seeds.

A row is one metric of one group of runs — same method, backbone and every other axis that varies
in the grid, except ``seed`` — with one :class:`Stat` per view policy. Runs without a value keep
their state (``pending``, ``running``, ``failed``, ``collapsed``, ...) so a table never shows a
missing number as one.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dashboards import paper
from db import RunView

BASE_AXES = ("method", "backbone")
POLICY = "views.policy"
POLICY_ORDER = ("baseline", "sslight")  # before any other policy; Δ is SSLight − baseline
COLLAPSED = "collapsed"
ACTIVE = ("pending", "submitted", "running")  # runs that may still produce a value
NOT_RUN = "not run"  # a finished run whose stages do not include the metric's


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per metric
class Metric:
    """A table line: the result keys that hold it (first present wins) and what to print beside."""

    label: str
    keys: tuple[str, ...]
    stages: tuple[str, ...]  # stages producing it; a table shows it when some run has one
    reported: paper.Reported | None = None
    floors: tuple[str, str] | None = None  # random-init and raw-pixel floor keys


PRETRAINING = (
    Metric(
        "linear top-1",
        ("linear_top1",),
        ("linear",),
        paper.LINEAR_TOP1,
        ("linear_floor_random_top1", "linear_floor_pixels_top1"),
    ),
    Metric(
        "k-NN top-1",
        ("knn_top1",),
        ("knn",),
        None,
        ("knn_floor_random_top1", "knn_floor_pixels_top1"),
    ),
)
DOWNSTREAM = (
    Metric("semi 1 % top-1", ("semi_1_top1",), ("semi_1",), paper.SEMI_1_TOP1),
    Metric("semi 10 % top-1", ("semi_10_top1",), ("semi_10",), paper.SEMI_10_TOP1),
    Metric(
        "COCO box AP",
        ("segmentation_box_ap", "detection_box_ap"),
        ("segmentation", "detection"),
        paper.COCO_BOX_AP,
    ),
    Metric("COCO mask AP", ("segmentation_mask_ap",), ("segmentation",), paper.COCO_MASK_AP),
)


@dataclass(frozen=True)
class Stat:
    """The values of one cell over seeds, and the states of its runs that have none."""

    values: tuple[float, ...] = ()
    missing: tuple[str, ...] = ()
    collapsed: int = 0  # how many of the values come from runs flagged as collapsed

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds; None below two values."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None


@dataclass(frozen=True)
class Row:
    labels: tuple[str, ...]  # one value per axis of the table
    metric: Metric
    cells: dict[str, Stat]  # view policy → stat
    reported: paper.Pair | None
    floors: tuple[float | None, float | None] | None  # (random-init, raw pixels) means

    @property
    def delta(self) -> float | None:
        """SSLight − baseline, of the means; None unless both have values."""
        base, light = self.cells.get("baseline"), self.cells.get("sslight")
        if base is None or light is None or not base.n or not light.n:
            return None
        return light.mean - base.mean


@dataclass(frozen=True)
class TableData:
    title: str
    axes: tuple[str, ...]
    policies: tuple[str, ...]
    rows: tuple[Row, ...]
    protocol: tuple[tuple[str, str], ...] = ()  # (what, the runs' values) under the table


# How the numbers were evaluated, said under each table: (what, config key, shown for stages).
PROTOCOL = (
    ("evaluated network", "eval.network", None),
    ("semi-supervised head", "eval.semi.head", ("semi_",)),
    ("precision", "train.precision", None),
)


def protocol(runs: Sequence[RunView], metrics: Sequence[Metric], axes: Sequence[str]) -> tuple:
    """The evaluation settings of ``runs`` that are not a table axis, as ``(what, values)``:
    the network evaluated, the semi-supervised head (for semi rows), the precision."""
    stages = {stage for metric in metrics for stage in metric.stages}
    said = []
    for what, key, for_stages in PROTOCOL:
        if key in axes or (for_stages and not any(s.startswith(for_stages) for s in stages)):
            continue
        values = list(dict.fromkeys(label_of(run.config, key) for run in runs))
        values = [v for v in values if v != "null"]  # runs recorded before the key existed
        if values:
            said.append((what, ", ".join(values)))
    return tuple(said)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys → JSON of the leaf values (lists are leaves)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = json.dumps(value, sort_keys=True)
    return flat


def _ignored(key: str) -> bool:
    return key == "output_dir" or key.rsplit(".", 1)[-1] == "seed"


def table_axes(runs: Sequence[RunView]) -> tuple[str, ...]:
    """Method, backbone, then every other varying key not implied by the axes before it.

    Keys a view policy sets (crop sizes, loss weights) vary with it and so are no axes; seeds are
    aggregated over; anything else that splits a group (an ``epochs`` axis, say) is an axis.
    """
    flat = [flatten(run.config) for run in runs]
    fixed = [*BASE_AXES, POLICY]
    every = sorted({key for f in flat for key in f})
    varying = [
        k for k in every if k not in fixed and not _ignored(k) and len({f.get(k) for f in flat}) > 1
    ]
    extra: list[str] = []
    for key in varying:
        groups: dict[tuple, set] = defaultdict(set)
        for f in flat:
            groups[tuple(f.get(a) for a in (*fixed, *extra))].add(f.get(key))
        if any(len(values) > 1 for values in groups.values()):
            extra.append(key)
    return (*BASE_AXES, *extra)


def label_of(config: dict[str, Any], axis: str) -> str:
    value: Any = config
    for part in axis.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, str) else json.dumps(value)


def collapse_note(run: RunView) -> str | None:
    """``collapsed at epoch N`` (N from 1, as the logs count) when the run was flagged."""
    collapse = (run.result or {}).get("collapse")
    if not collapse:
        return None
    epoch = collapse.get("epoch") if isinstance(collapse, dict) else None
    return COLLAPSED if not isinstance(epoch, int) else f"{COLLAPSED} at epoch {epoch + 1}"


def outcome(run: RunView, metric: Metric) -> float | str:
    """The run's value of ``metric``, or why it has none: its status, collapse or ``not run``."""
    result = run.result or {}
    for key in metric.keys:
        value = result.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    collapsed = collapse_note(run)
    if collapsed and run.status in ACTIVE:
        return f"{run.status}, {collapsed}"
    return collapsed or (NOT_RUN if run.status == "finished" else run.status)


def _has(run: RunView, metric: Metric) -> bool:
    return any(key in (run.result or {}) for key in metric.keys)


def _runs_stage(run: RunView, metric: Metric) -> bool:
    stages = run.config.get("stages")
    return stages is not None and any(stage in stages for stage in metric.stages)


def planned(run: RunView, metric: Metric) -> bool:
    """Whether the run has the metric or runs a stage producing it (no ``stages``: assume so)."""
    return run.config.get("stages") is None or _runs_stage(run, metric) or _has(run, metric)


def _stat(runs: Sequence[RunView], metric: Metric) -> Stat:
    found = [(outcome(run, metric), run) for run in runs if planned(run, metric)]
    return Stat(
        tuple(v for v, _ in found if isinstance(v, float)),
        tuple(v for v, _ in found if isinstance(v, str)),
        sum(isinstance(v, float) and collapse_note(run) is not None for v, run in found),
    )


def _mean_of(runs: Sequence[RunView], key: str) -> float | None:
    values = [(r.result or {}).get(key) for r in runs]
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return statistics.fmean(numbers) if numbers else None


def _floors(runs: Sequence[RunView], metric: Metric) -> tuple[float | None, float | None] | None:
    if metric.floors is None:
        return None
    floors = (_mean_of(runs, metric.floors[0]), _mean_of(runs, metric.floors[1]))
    return None if floors == (None, None) else floors


def shown(runs: Sequence[RunView], metric: Metric) -> bool:
    """Whether some run has the metric, or runs a stage that produces it."""
    return any(_runs_stage(run, metric) or _has(run, metric) for run in runs)


def policies(runs: Sequence[RunView]) -> tuple[str, ...]:
    found = list(dict.fromkeys(label_of(run.config, POLICY) for run in runs))
    return tuple(sorted(found, key=lambda p: (*POLICY_ORDER, p).index(p)))


def group(runs: Sequence[RunView]) -> tuple[tuple[str, ...], dict[tuple[str, ...], list[RunView]]]:
    """The table's axes, and the runs of each label tuple (first-seen order)."""
    axes = table_axes(runs)
    groups: dict[tuple[str, ...], list[RunView]] = {}
    for run in runs:
        groups.setdefault(tuple(label_of(run.config, a) for a in axes), []).append(run)
    return axes, groups


def collect(runs: Sequence[RunView], metrics: Sequence[Metric], title: str) -> TableData | None:
    """One table of ``metrics`` over ``runs``; None when no run has or produces any of them."""
    metrics = [m for m in metrics if shown(runs, m)]
    if not runs or not metrics:
        return None
    axes, groups = group(runs)
    order = policies(runs)
    rows = []
    for labels, members in groups.items():
        by_policy: dict[str, list[RunView]] = defaultdict(list)
        for run in members:
            by_policy[label_of(run.config, POLICY)].append(run)
        method_backbone = (labels[0], labels[1])
        for metric in (m for m in metrics if any(planned(run, m) for run in members)):
            rows.append(
                Row(
                    labels=labels,
                    metric=metric,
                    cells={p: _stat(by_policy.get(p, []), metric) for p in order},
                    reported=(metric.reported or {}).get(method_backbone),
                    floors=_floors(members, metric),
                )
            )
    shown_metrics = list(dict.fromkeys(row.metric for row in rows))
    return TableData(title, axes, order, tuple(rows), protocol(runs, shown_metrics, axes))
