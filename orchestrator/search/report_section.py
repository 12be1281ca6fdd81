"""The report section of an ``orchestrate search`` study: best parameters against the baseline and
SSLight points, every trial, parameter importances and the optimisation history (PNG).

Figures are drawn on matplotlib's ``Figure`` (Agg, no pyplot state) like ``dashboards.plots``.
Importing this module registers the section (``dashboards.sections``); ``orchestrate report``
does. It lives here, not in the dashboards, because it reads the study through the search.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dashboards.sections import Section, register_section
from db import GridView, Registry

log = logging.getLogger(__name__)

DPI = 110
REFERENCE_COLOURS = {"baseline": "#4c72b0", "sslight": "#dd8452"}


@register_section("search")
def search_section(registry: Registry, grid: GridView, out_dir: Path) -> Section | None:
    if grid.spec.get("kind") != "search":
        return None
    from orchestrator.search.spec import Search
    from orchestrator.search.study import display_storage, load_study

    search = Search.from_spec(grid.spec)
    try:
        study = load_study(search)
    except Exception as err:  # storage gone or unreachable: say so, keep the report
        text = f"The study in {display_storage(search)} cannot be read: {err}"
        return Section("Search", text + "\n", f"<p>{html.escape(text)}</p>")
    from orchestrator.search.summary import standing, summary_lines, trials_rows

    lines = summary_lines(search, study)
    verdict = lines[lines.index("") + 1 :]  # the summary after the trials table
    rows = trials_rows(study, search.objective)
    images = []
    out_dir.mkdir(parents=True, exist_ok=True)
    history = history_figure(study, search.objective, out_dir / f"{grid.name}-history.png")
    if history is not None:
        images.append(history)
    importance = importance_figure(study, out_dir / f"{grid.name}-importance.png")
    if importance is not None:
        images.append(importance)
    best = standing(study).best
    title = f"Search {grid.name}: {search.objective} over the view policy"
    markdown = "\n".join(
        [
            *(f"- {line}" for line in verdict),
            "",
            _markdown_table(rows),
            "",
            _importance_note(importance, best),
        ]
    )
    markup = (
        "<ul>"
        + "".join(f"<li>{html.escape(line)}</li>" for line in verdict)
        + "</ul>"
        + _html_table(rows)
        + f"<p>{html.escape(_importance_note(importance, best))}</p>"
    )
    return Section(title, markdown + "\n", markup, tuple(images))


def _importance_note(importance: Path | None, best: Any) -> str:
    if importance is not None:
        return "Parameter importances: fANOVA over the completed trials."
    if best is None:
        return "No completed trial yet."
    return "No parameter importances: they need completed trials with different values."


def _markdown_table(rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"

    return "\n".join([line(rows[0]), line(["---"] * len(rows[0])), *map(line, rows[1:])])


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:]
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def history_figure(study: Any, objective: str, path: Path) -> Path | None:
    """Each trial's value (pruned ones at their last k-NN), the best so far, and the baseline
    and SSLight trials' values as horizontal lines."""
    from optuna.trial import TrialState

    from orchestrator.search.summary import standing

    trials = [t for t in study.get_trials(deepcopy=False) if t.value is not None]
    if not trials:
        return None
    fig = Figure(figsize=(6.4, 3.6), dpi=DPI)
    ax = fig.add_subplot()
    for state, marker, label in (
        (TrialState.COMPLETE, "o", "complete"),
        (TrialState.PRUNED, "x", "pruned (last k-NN)"),
    ):
        points = [(t.number, t.value) for t in trials if t.state == state]
        if points:
            ax.scatter(*zip(*points, strict=True), marker=marker, color="#555555", label=label)
    best, running = [], None
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state == TrialState.COMPLETE:
            running = trial.value if running is None else max(running, trial.value)
        if running is not None:
            best.append((trial.number, running))
    if best:
        ax.step(*zip(*best, strict=True), where="post", color="#55a868", label="best so far")
    for name, trial in standing(study).references.items():
        if trial is not None:
            ax.axhline(trial.value, linestyle="--", color=REFERENCE_COLOURS[name], label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{objective} (%)")
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return path


def importance_figure(study: Any, path: Path) -> Path | None:
    """fANOVA importance of each parameter for the objective (needs two completed trials)."""
    import optuna

    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError) as err:  # too few completed trials, or all values equal
        log.info("no parameter importances for %s: %s", study.study_name, err)
        return None
    if not importances:
        return None
    names = list(importances)[::-1]
    fig = Figure(figsize=(6.4, 0.5 + 0.45 * len(names)), dpi=DPI)
    ax = fig.add_subplot()
    ax.barh(names, [importances[n] for n in names], color="#8172b3")
    ax.set_xlabel("importance (fANOVA, sums to 1)")
    fig.tight_layout()
    fig.savefig(path)
    return path
