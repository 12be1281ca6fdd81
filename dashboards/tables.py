"""Table rows → text: Markdown (also what ``orchestrate report`` prints) and HTML.

Numbers are percentages with one decimal; several seeds read ``mean ± std (n=N)``; a cell
without a value shows its state (``pending``, ``failed``, ``collapsed at epoch 3``, ...).
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass

from dashboards.collect import COLLAPSED, Row, Stat, TableData

POLICY_TITLES = {"baseline": "baseline", "sslight": "SSLight"}
NONE = "—"  # no such cell in the grid, or nothing to compare
FLOORS_HEADER = "floors (random-init / pixels)"
DELTA_HEADER = "Δ"
PAPER_HEADER = "paper (baseline → SSLight)"
BAD_STATES = ("failed", "lost", "collapsed")


@dataclass(frozen=True)
class Cell:
    text: str
    kind: str = "number"  # number | label | state [bad] | none; the HTML class


@dataclass(frozen=True)
class TextTable:
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    notes: tuple[str, ...]


def _states(missing: tuple[str, ...]) -> str:
    counts = Counter(missing)
    return ", ".join(s if n == 1 else f"{n} {s}" for s, n in counts.items())


def format_stat(stat: Stat) -> Cell:
    """``66.2``, ``66.2 ± 0.4 (n=2)``, ``66.2 (n=1; 1 running)``, ``8.2 (collapsed)``, or the
    runs' state."""
    if not stat.n:
        if not stat.missing:
            return Cell(NONE, "none")
        bad = any(s.startswith(BAD_STATES) or COLLAPSED in s for s in stat.missing)
        return Cell(_states(stat.missing), "state bad" if bad else "state")
    text = f"{stat.mean:.1f}"
    if stat.std is not None:
        text += f" ± {stat.std:.1f}"
    extras = [f"n={stat.n}"] if stat.n > 1 or stat.missing else []
    if stat.collapsed:
        extras.append(COLLAPSED if stat.n == 1 else f"{stat.collapsed} {COLLAPSED}")
    if stat.missing:
        extras.append(_states(stat.missing))
    text += f" ({'; '.join(extras)})" if extras else ""
    return Cell(text, "number bad" if stat.collapsed else "number")


def signed(value: float) -> str:
    return f"{value:+.1f}"


def format_reported(pair: tuple[float, float] | None) -> Cell:
    if pair is None:
        return Cell(NONE, "none")
    base, light = pair
    return Cell(f"{base:.1f} → {light:.1f} ({signed(light - base)})")


def format_floors(floors: tuple[float | None, float | None] | None) -> Cell:
    if floors is None:
        return Cell(NONE, "none")
    return Cell(" / ".join(NONE if v is None else f"{v:.1f}" for v in floors))


def text_table(data: TableData) -> TextTable:
    """The header and cells of ``data``; paper and floor columns only where some row has them."""
    with_delta = {"baseline", "sslight"} <= set(data.policies)
    with_paper = any(row.reported for row in data.rows)
    with_floors = any(row.floors for row in data.rows)
    header = [*data.axes, "metric", *(POLICY_TITLES.get(p, p) for p in data.policies)]
    header += [DELTA_HEADER] if with_delta else []
    header += [PAPER_HEADER] if with_paper else []
    header += [FLOORS_HEADER] if with_floors else []
    rows, previous = [], None
    for row in data.rows:
        labels = [Cell("" if row.labels == previous else v, "label") for v in row.labels]
        previous = row.labels
        cells = [*labels, Cell(row.metric.label, "label")]
        cells += [format_stat(row.cells[p]) for p in data.policies]
        if with_delta:
            cells.append(_delta(row))
        if with_paper:
            cells.append(format_reported(row.reported))
        if with_floors:
            cells.append(format_floors(row.floors))
        rows.append(tuple(cells))
    return TextTable(data.title, tuple(header), tuple(rows), _notes(data, with_paper, with_floors))


def _delta(row: Row) -> Cell:
    delta = row.delta
    return Cell(NONE, "none") if delta is None else Cell(signed(delta))


def _notes(data: TableData, with_paper: bool, with_floors: bool) -> tuple[str, ...]:
    units = "Top-1 in %, AP in points" if any("AP" in r.metric.label for r in data.rows) else "In %"
    notes = [f"{units}; several seeds: mean ± sample std (n = runs with a value)."]
    if {"baseline", "sslight"} <= set(data.policies):
        notes.append("Δ: SSLight − baseline, of the means.")
    if data.protocol:
        notes.append("Evaluated as: " + "; ".join(f"{what} {v}" for what, v in data.protocol) + ".")
    if with_paper:
        notes.append(
            "paper: ImageNet (COCO 2017 for AP) numbers reported by Tan, Saleh, Martinez, "
            "ICLR 2023 for the same method and backbone."
        )
    if with_floors:
        notes.append(
            "floors: the same evaluation on a random-initialised backbone and on raw pixels; "
            "a result near them learnt little."
        )
    return tuple(notes)


def markdown(table: TextTable) -> str:
    """A padded GitHub-style Markdown table under a ``###`` title, notes below."""
    texts = [list(table.header), *[[c.text for c in row] for row in table.rows]]
    widths = [max(len(r[i]) for r in texts) for i in range(len(table.header))]
    numeric = [all(row[i].kind != "label" for row in table.rows) for i in range(len(table.header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "| " + " | ".join(
        ("-" * (w - 1) + ":") if num else "-" * w for w, num in zip(widths, numeric, strict=True)
    )
    lines = [f"### {table.title}", "", line(texts[0]), rule + " |"]
    lines += [line(r) for r in texts[1:]]
    lines += ["", *(f"{note}  " for note in table.notes)]
    return "\n".join(lines).rstrip() + "\n"


def to_html(table: TextTable) -> str:
    """A ``<table>`` with a caption; cells carry their kind as a class for the page's CSS."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>" + "".join(f'<td class="{c.kind}">{html.escape(c.text)}</td>' for c in row) + "</tr>"
        for row in table.rows
    )
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in table.notes)
    return (
        f"<h3>{html.escape(table.title)}</h3><div class='wide'>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{notes}"
    )
