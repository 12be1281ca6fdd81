"""PNG plots of a grid: training curves per cell and baseline-vs-SSLight bars beside the paper's.

Figures are drawn on matplotlib's ``Figure`` directly (the Agg canvas, no pyplot state), so
reports render headless and in parallel with anything else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from dashboards.collect import Row, TableData
from dashboards.tables import POLICY_TITLES, format_stat
from db import RunView

# The epoch lines of metrics.jsonl (sslight/engine/epoch_end.py): the k-NN monitor in %, and the
# joint probe's accuracy on the last batch of the epoch as a fraction (methods/base.py
# ``probe_acc``).
KNN_KEY, PROBE_KEY = "knn_top1", "last_probe_acc"
POLICY_COLOURS = {"baseline": "#4c72b0", "sslight": "#dd8452"}
OTHER_COLOURS = ("#55a868", "#8172b3", "#937860", "#da8bc3")
LINESTYLES = {"baseline": "--", "sslight": "-"}
DPI = 110


@dataclass(frozen=True)
class Curve:
    """Per-epoch monitors of one run (epochs counted from 1)."""

    name: str
    group: str
    policy: str
    knn: list[tuple[int, float]] = field(default_factory=list)
    probe: list[tuple[int, float]] = field(default_factory=list)


def read_curve(run: RunView, path: Path, group: str, policy: str) -> Curve | None:
    """The epoch lines of ``run``'s metrics file ``path``; None when it is missing or has none."""
    if not path.is_file():
        return None
    curve = Curve(run.name, group, policy)
    for text in path.read_text().splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if not isinstance(line, dict) or line.get("type") != "epoch":
            continue
        epoch = int(line.get("epoch", 0)) + 1
        if isinstance(line.get(KNN_KEY), (int, float)):
            curve.knn.append((epoch, float(line[KNN_KEY])))
        if isinstance(line.get(PROBE_KEY), (int, float)):
            curve.probe.append((epoch, 100.0 * float(line[PROBE_KEY])))
    return curve if curve.knn or curve.probe else None


def _colour(index: int) -> str:
    """Group colours, none of them the policy colours of the bar charts."""
    palette = ("#2a9d8f", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#b5a642")
    return palette[index % len(palette)]


def curves_figure(curves: Sequence[Curve], path: Path, title: str) -> Path:
    """Two panels, k-NN monitor and joint probe per epoch; a line per run (colour = group,
    dashed = baseline, solid = SSLight)."""
    groups = list(dict.fromkeys(c.group for c in curves))
    fig = Figure(figsize=(11, 4.2), dpi=DPI, layout="constrained")
    panels = fig.subplots(1, 2)
    for ax, attr, name in (
        (panels[0], "knn", "k-NN monitor top-1 (%)"),
        (panels[1], "probe", "joint linear probe, last batch (%)"),
    ):
        drawn = False
        for curve in curves:
            points = getattr(curve, attr)
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            ax.plot(
                xs,
                ys,
                LINESTYLES.get(curve.policy, ":"),
                marker="o",
                markersize=3,
                color=_colour(groups.index(curve.group)),
                label=curve.name,
            )
            drawn = True
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if drawn:
            ax.xaxis.get_major_locator().set_params(integer=True)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    handles, labels = panels[0].get_legend_handles_labels()
    if not handles:
        handles, labels = panels[1].get_legend_handles_labels()
    if len(handles) > 1:  # one run: its name is the title
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def bars_figure(data: TableData, path: Path) -> Path:
    """One panel per metric: measured bars per view policy (error bar = std over seeds), the
    paper's numbers hatched beside them, floors as dotted lines; states written where no bar."""
    metrics = list(dict.fromkeys(row.metric for row in data.rows))
    cols = min(2, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    per_group = max(len({r.labels for r in data.rows}), 1)
    width = max(4.0, min(8.0, 1.4 * per_group + 1.5)) * cols
    fig = Figure(figsize=(width, 3.8 * nrows + 0.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics, strict=False):
        _bars_panel(ax, [r for r in data.rows if r.metric == metric], data.policies)
        ax.set_title(metric.label, fontsize=10)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    handles = _legend(data)
    ncols = max(1, min(len(handles), int(width / 1.8)))
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, fontsize=8)
    fig.suptitle(data.title, fontsize=11)
    return _save(fig, path)


def _policy_colour(policy: str, policies: Sequence[str]) -> str:
    others = [p for p in policies if p not in POLICY_COLOURS]
    return POLICY_COLOURS.get(policy) or OTHER_COLOURS[others.index(policy) % len(OTHER_COLOURS)]


def _bars_panel(ax, rows: list[Row], policies: Sequence[str]) -> None:
    reported = any(r.reported for r in rows)
    slots = [("measured", p) for p in policies]
    if reported:
        slots += [("paper", "baseline"), ("paper", "sslight")]
    step = 0.8 / len(slots)
    top = 1.0
    for x, row in enumerate(rows):
        for i, (source, policy) in enumerate(slots):
            pos = x - 0.4 + step * (i + 0.5)
            colour = _policy_colour(policy, policies)
            if source == "paper":
                if row.reported:
                    value = row.reported[0 if policy == "baseline" else 1]
                    ax.bar(pos, value, step, color=colour, alpha=0.35, hatch="//", edgecolor=colour)
                    top = max(top, value)
                continue
            stat = row.cells[policy]
            if stat.n:
                ax.bar(pos, stat.mean, step, color=colour, yerr=stat.std, capsize=3)
                top = max(top, stat.mean + (stat.std or 0.0))
                if stat.collapsed:
                    ax.text(pos, stat.mean + (stat.std or 0.0), " collapsed", rotation=90,
                            ha="center", va="bottom", fontsize=7, color="#b3261e")  # fmt: skip
            else:
                ax.text(
                    pos,
                    0,
                    " " + format_stat(stat).text,
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color="#666666",
                )
        for value, style in zip(row.floors or (), (":", "--"), strict=False):
            if value is not None:
                ax.hlines(value, x - 0.45, x + 0.45, colors="#333333", linestyles=style, lw=1)
                top = max(top, value)
    ax.set_xticks(range(len(rows)), ["\n".join(r.labels) for r in rows], fontsize=8)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylim(0, top * 1.12)
    ax.grid(axis="y", alpha=0.3)


def _legend(data: TableData) -> list:
    handles = [
        Patch(color=_policy_colour(p, data.policies), label=f"{POLICY_TITLES.get(p, p)} (measured)")
        for p in data.policies
    ]
    if any(r.reported for r in data.rows):
        for p in ("baseline", "sslight"):
            colour = _policy_colour(p, data.policies)
            handles.append(
                Patch(
                    facecolor=colour,
                    alpha=0.35,
                    hatch="//",
                    edgecolor=colour,
                    label=f"{POLICY_TITLES[p]} (paper)",
                )
            )
    if any(r.floors for r in data.rows):
        from matplotlib.lines import Line2D

        handles += [
            Line2D([], [], color="#333333", ls=":", label="random-init floor"),
            Line2D([], [], color="#333333", ls="--", label="raw-pixel floor"),
        ]
    return handles
