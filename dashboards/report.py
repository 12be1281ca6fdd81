"""A report of grids: the paper's tables in Markdown and HTML, PNG plots, registered sections.

``write_report(registry, grids, out_dir, files)`` writes ``report.md``, a self-contained
``report.html`` (inline CSS, images as data URIs) and the PNGs into ``out_dir``, and a copy of
each cell's training curves into its run directory's ``report/`` for the tracking server to pick
up. Where a run directory keeps those files is the caller's to say (``RunFiles``): the dashboards
read the registry only, not the library that lays run directories out.
"""

from __future__ import annotations

import base64
import html
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from dashboards import collect, plots, tables
from dashboards.sections import Section, sections
from db import GridView, Registry, RunView, mask_url

log = logging.getLogger(__name__)
CELL_CURVES_PNG = "training_curves.png"  # in each run directory's report folder
TABLES = (
    (collect.PRETRAINING, "Pretraining: linear and k-NN top-1", "pretraining"),
    (collect.DOWNSTREAM, "Downstream: semi-supervised top-1 and COCO AP", "downstream"),
)


@dataclass
class Part:
    """Markdown and HTML of a grid's report, and the PNGs they show (paths under ``out_dir``)."""

    markdown: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    cell_images: list[Path] = field(default_factory=list)

    def add(self, md: str, markup: str) -> None:
        self.markdown.append(md)
        self.html.append(markup)

    def image(self, path: Path, out_dir: Path, alt: str) -> None:
        self.images.append(path)
        self.markdown.append(f"![{alt}]({path.relative_to(out_dir).as_posix()})\n")
        self.html.append(f'<img alt="{html.escape(alt)}" src="{data_uri(path)}">')


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _summary(grid: GridView, runs: Sequence[RunView]) -> str:
    counts = Counter(run.status for run in runs)
    states = ", ".join(f"{n} {s}" for s, n in counts.most_common())
    return f"{len(runs)} cells ({states or 'none registered'}); workdir `{grid.workdir}`"


def grid_report(registry: Registry, grid: GridView, out_dir: Path, files: RunFiles) -> Part:
    """One grid's section: its paper tables and plots (unless it is a search), then sections."""
    runs = registry.runs(grid_name=grid.name, kinds=("cell",))
    part = Part()
    summary = _summary(grid, runs)
    part.add(
        f"## Grid `{grid.name}`\n\n{summary}\n",
        f"<h2>Grid <code>{html.escape(grid.name)}</code></h2>"
        f"<p class='summary'>{html.escape(summary).replace('`', '')}</p>",
    )
    if grid.spec.get("kind") != "search" and runs:
        _paper_tables(part, grid, runs, out_dir)
        _curves(part, grid, runs, out_dir, files)
    for name, build in sections().items():
        try:
            section = build(registry, grid, out_dir)
        except Exception as err:  # one broken section must not cost the rest of the report
            log.warning("report section %r of grid %s failed", name, grid.name, exc_info=True)
            text = f"The {name!r} section could not be written: {type(err).__name__}: {err}"
            section = Section(
                f"Section {name!r} failed", text + "\n", f"<p>{html.escape(text)}</p>"
            )
        if section is not None:
            _add_section(part, section, out_dir, name)
    return part


def _paper_tables(part: Part, grid: GridView, runs: Sequence[RunView], out_dir: Path) -> None:
    for metrics, title, slug in TABLES:
        data = collect.collect(runs, metrics, title)
        if data is None:
            continue
        text = tables.text_table(data)
        part.add(tables.markdown(text), tables.to_html(text))
        png = plots.bars_figure(data, out_dir / f"{grid.name}-{slug}.png")
        part.image(png, out_dir, f"{grid.name}: {title}, measured and reported")


@dataclass(frozen=True)
class RunFiles:
    """Where a run's directory keeps its per-epoch metrics and its report folder."""

    metrics: Callable[[RunView], Path]
    report_dir: Callable[[RunView], Path]


def _curves(
    part: Part, grid: GridView, runs: Sequence[RunView], out_dir: Path, files: RunFiles
) -> None:
    _, groups = collect.group(runs)
    curves = []
    for labels, members in groups.items():
        for run in members:
            policy = collect.label_of(run.config, collect.POLICY)
            curve = plots.read_curve(run, files.metrics(run), " / ".join(labels), policy)
            if curve is None:
                continue
            curves.append(curve)
            cell_png = files.report_dir(run) / CELL_CURVES_PNG
            part.cell_images.append(plots.curves_figure([curve], cell_png, run.name))
    if curves:
        title = "Training curves per epoch"
        png = plots.curves_figure(curves, out_dir / f"{grid.name}-curves.png", grid.name)
        part.add(f"### {title}\n", f"<h3>{title}</h3>")
        part.image(png, out_dir, f"{grid.name}: k-NN monitor and joint probe per epoch")


def _add_section(part: Part, section: Section, out_dir: Path, name: str) -> None:
    part.add(
        f"### {section.title}\n\n{section.markdown}",
        f"<section class='extra {html.escape(name)}'><h3>{html.escape(section.title)}</h3>"
        f"{section.html}</section>",
    )
    for png in section.images:
        png = Path(png)
        inside = png.resolve().is_relative_to(out_dir.resolve())
        alt = f"{section.title}: {png.stem}"
        if inside:
            part.image(png.resolve(), out_dir.resolve(), alt)
        else:
            part.images.append(png)
            part.html.append(f'<img alt="{html.escape(alt)}" src="{data_uri(png)}">')


@dataclass(frozen=True)
class Written:
    markdown: str
    markdown_path: Path
    html_path: Path
    images: tuple[Path, ...]
    cell_images: tuple[Path, ...]


def write_report(
    registry: Registry, grids: Sequence[GridView], out_dir: Path, files: RunFiles
) -> Written:
    """Write ``report.md``, ``report.html`` and the plots of ``grids`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = f"registry {mask_url(registry.url)}, {stamp}"
    parts = [grid_report(registry, grid, out_dir, files) for grid in grids]
    title = "SSLight report" + (f": {grids[0].name}" if len(grids) == 1 else "")
    markdown = "\n".join([f"# {title}\n\n{where}\n", *("\n".join(p.markdown) for p in parts)])
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text(markdown)
    body = "".join("".join(p.html) for p in parts)
    html_path.write_text(page(title, f"<p class='summary'>{html.escape(where)}</p>{body}"))
    return Written(
        markdown,
        md_path,
        html_path,
        tuple(png for p in parts for png in p.images),
        tuple(png for p in parts for png in p.cell_images),
    )


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
 max-width:1180px;margin:2em auto;padding:0 1.5em}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ddd;
 padding-bottom:.2em}h3{margin:1.4em 0 .5em}
table{border-collapse:collapse;margin:.4em 0;font-variant-numeric:tabular-nums}
th,td{padding:.3em .7em;border-bottom:1px solid #e4e4e4;white-space:nowrap}
div.wide{overflow-x:auto}
th{background:#f3f4f6;text-align:left;font-weight:600;border-bottom:2px solid #ccc;
 white-space:normal;vertical-align:bottom}
td.number,td.none,td.state{text-align:right}td.label{color:#333}
td.state{font-style:italic;color:#777}td.bad{color:#b3261e}td.none{color:#aaa}
tbody tr:nth-child(even){background:#fafafa}
p.note,p.summary{color:#666;font-size:.9em;margin:.2em 0}
img{max-width:100%;display:block;margin:1em 0;border:1px solid #eee}
code{background:#f3f4f6;padding:0 .25em;border-radius:3px}
"""


def page(title: str, body: str) -> str:
    """A complete HTML document: inline CSS, nothing fetched from anywhere."""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )
