"""Extra report sections: the hook for anything beyond the paper's tables.

A section builder is ``fn(registry, grid, out_dir) -> Section | None``: it reads what it needs
from the registry (and the runs' directories), writes any PNGs into ``out_dir`` and returns its
Markdown and HTML (None: nothing to say for this grid). ``orchestrate report`` calls every
registered builder for every grid, after the paper's tables; for a grid whose spec says
``kind: search`` (``grid.spec.get("kind") == "search"``) it renders these sections only.

``SECTIONS`` is a registry: a module registers its builders when it is imported, and whoever
writes the report imports the modules whose sections it wants. The dashboards read the registry
only, so sections that need more live with what they need: ``orchestrate report`` imports
``orchestrator/search/report_section.py`` (a search's best parameters, trials, importances)::

    from dashboards.sections import Section, register_section

    @register_section("search")
    def search_section(registry, grid, out_dir):
        if grid.spec.get("kind") != "search":
            return None
        ...
        return Section("Search", markdown_text, html_text, (out_dir / "importance.png",))

The report embeds each listed PNG in the HTML page as a data URI and links it from the Markdown;
``html`` must not load anything from the network.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dashboards.collect import collapse_note
from db import GridView, Registry


@dataclass(frozen=True)
class Section:
    title: str
    markdown: str
    html: str
    images: tuple[Path, ...] = ()


SectionBuilder = Callable[[Registry, GridView, Path], "Section | None"]
SECTIONS: dict[str, SectionBuilder] = {}


def register_section(name: str) -> Callable[[SectionBuilder], SectionBuilder]:
    """Register a section builder under ``name`` (rendered in registration order)."""

    def add(fn: SectionBuilder) -> SectionBuilder:
        if name in SECTIONS and SECTIONS[name] is not fn:
            raise ValueError(f"report section {name!r} is registered twice")
        SECTIONS[name] = fn
        return fn

    return add


def sections() -> dict[str, SectionBuilder]:
    """Every registered builder, in registration order."""
    return SECTIONS


@register_section("problems")
def problems(registry: Registry, grid: GridView, out_dir: Path) -> Section | None:
    """Cells that failed, were lost or collapsed, with the first line of why."""
    lines: list[tuple[str, str, str]] = []
    for run in registry.runs(grid_name=grid.name, kinds=("cell",)):
        collapse, note = (run.result or {}).get("collapse"), collapse_note(run)
        if note:
            reason = collapse.get("reason", "") if isinstance(collapse, dict) else ""
            lines.append((run.name, note, str(reason)))
        elif run.status in ("failed", "lost"):
            error = (run.error or "").strip().splitlines()
            lines.append((run.name, run.status, error[0] if error else ""))
    if not lines:
        return None
    md = "\n".join(f"- `{n}`: {s}" + (f" — {why}" if why else "") for n, s, why in lines)
    items = "".join(
        f"<li><code>{html.escape(n)}</code>: {html.escape(s)}"
        + (f" — {html.escape(why)}" if why else "")
        + "</li>"
        for n, s, why in lines
    )
    return Section("Cells that need attention", md + "\n", f"<ul>{items}</ul>")
