"""``orchestrate report``: the paper's tables, plots and HTML from a real SQLite registry."""

from __future__ import annotations

import base64
import importlib
import json
import re
from pathlib import Path

import pytest
import yaml
from PIL import Image
from tiny import TINY_RUN

from dashboards import sections
from dashboards.collect import Stat
from dashboards.sections import Section
from dashboards.tables import format_stat
from db import open_registry, resolve_url
from orchestrator.cli import main

FLOORS = {
    "knn_floor_random_top1": 20.0,
    "knn_floor_pixels_top1": 40.0,
    "linear_floor_random_top1": 25.0,
    "linear_floor_pixels_top1": 45.0,
}
PRETRAIN_STAGES = ["pretrain", "knn", "linear"]
DOWNSTREAM_STAGES = [*PRETRAIN_STAGES, "semi_1", "semi_10"]


def _cell(tmp_path: Path, method: str, backbone: str, policy: str, seed: int = 0, **extra) -> dict:
    name = f"{method}-{backbone}-{policy}-s{seed}" + "".join(f"-{v}" for v in extra.values())
    config = {
        "method": method,
        "backbone": backbone,
        "views": {"policy": policy, "local_crops": {"size": 18 if policy == "sslight" else 14}},
        "train": {"epochs": 3, **extra},
        "stages": DOWNSTREAM_STAGES if backbone == "resnet18" else PRETRAIN_STAGES,
        "seed": seed,
        "output_dir": str(tmp_path / "runs" / "paper" / "cells" / name),
    }
    return {"key": name, "name": name, "config": config, "output_dir": config["output_dir"]}


def _epochs(path: Path, knn: list[float], probe: list[float]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    lines = []
    for epoch, (k, p) in enumerate(zip(knn, probe, strict=True)):
        lines.append({"step": epoch * 10 + 5, "epoch": epoch, "loss": 5.5, "probe_acc": p})
        lines.append(
            {"step": epoch * 10 + 9, "epoch": epoch, "type": "epoch", "knn_top1": k,
             "last_probe_acc": p, "last_loss": 5.5}
        )  # fmt: skip
    (path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def _register(tmp_path: Path, name: str, cells: list[dict], spec: dict | None = None):
    registry = open_registry(resolve_url(None, str(tmp_path / "runs")))
    grid_id = registry.upsert_grid(name, f"{name}.yaml", str(tmp_path / "runs" / name), spec or {})
    registry.add_runs(grid_id, cells)
    return registry


@pytest.fixture
def paper_grid(tmp_path: Path) -> Path:
    """Two seeds of DINO R18 both ways with floors; MNv2 pending/failed; SwAV collapsed/running."""
    r18 = {
        ("baseline", 0): {"linear_top1": 60.0, "knn_top1": 50.0, "semi_1_top1": 45.0},
        ("baseline", 1): {"linear_top1": 62.0, "knn_top1": 52.0, "semi_1_top1": 47.0},
        ("sslight", 0): {"linear_top1": 64.0, "knn_top1": 55.0, "semi_1_top1": 50.0},
        ("sslight", 1): {"linear_top1": 65.0, "knn_top1": 56.0, "semi_1_top1": 50.0},
    }
    cells = [_cell(tmp_path, "dino", "resnet18", p, s) for p, s in r18]
    cells += [_cell(tmp_path, "dino", "mobilenet_v2", p) for p in ("baseline", "sslight")]
    cells += [_cell(tmp_path, "swav", "mobilenet_v2", p) for p in ("baseline", "sslight")]
    with _register(tmp_path, "paper", cells) as registry:
        for cell, ((_, seed), result) in zip(cells, r18.items(), strict=False):
            registry.set_status(cell["key"], "finished")
            registry.record_result(cell["key"], {**result, "semi_10_top1": 60.0, **FLOORS})
            _epochs(Path(cell["output_dir"]), [40.0 + seed, 45.0, 50.0], [0.1, 0.2, 0.25])
        registry.set_status(cells[5]["key"], "failed", error="DataRootError: /nonexistent")
        registry.set_status(cells[6]["key"], "failed", error="CollapseError: teacher entropy")
        registry.record_result(
            cells[6]["key"], {"knn_top1": 9.0, "collapse": {"epoch": 2, "reason": "entropy"}}
        )
        registry.set_status(cells[7]["key"], "running", stage="linear")
        registry.record_result(cells[7]["key"], {"knn_top1": 30.0})
    return tmp_path / "runs"


def _table(markdown: str, title: str) -> list[dict[str, str]]:
    """The rows of the Markdown table under ``### title``, empty labels filled from above."""
    block = markdown.split(f"### {title}", 1)[1].split("\n\n", 2)[1]
    lines = [line.strip().strip("|").split("|") for line in block.splitlines()]
    header = [h.strip() for h in lines[0]]
    rows, previous = [], {}
    for line in lines[2:]:
        row = dict(zip(header, (c.strip() for c in line), strict=True))
        for label in ("method", "backbone"):
            row[label] = row[label] or previous.get(label, "")
        rows.append(row)
        previous = row
    return rows


def _row(rows: list[dict], method: str, backbone: str, metric: str) -> dict[str, str]:
    [row] = [
        r for r in rows if (r["method"], r["backbone"], r["metric"]) == (method, backbone, metric)
    ]
    return row


def _report(root: Path, capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(["report", "--root", str(root), *args]) == 0
    return capsys.readouterr().out


def test_pretraining_table_aggregates_seeds_with_deltas_paper_numbers_floors_and_states(
    paper_grid, capsys
):
    out = _report(paper_grid, capsys, "--grid", "paper")
    rows = _table(out, "Pretraining: linear and k-NN top-1")
    linear = _row(rows, "dino", "resnet18", "linear top-1")
    assert linear["baseline"] == "61.0 ± 1.4 (n=2)" and linear["SSLight"] == "64.5 ± 0.7 (n=2)"
    assert linear["Δ"] == "+3.5"
    assert linear["paper (baseline → SSLight)"] == "62.2 → 65.7 (+3.5)"
    assert linear["floors (random-init / pixels)"] == "25.0 / 45.0"
    knn = _row(rows, "dino", "resnet18", "k-NN top-1")
    assert (knn["baseline"], knn["SSLight"]) == ("51.0 ± 1.4 (n=2)", "55.5 ± 0.7 (n=2)")
    assert knn["floors (random-init / pixels)"] == "20.0 / 40.0"
    mnv2 = _row(rows, "dino", "mobilenet_v2", "linear top-1")
    assert (mnv2["baseline"], mnv2["SSLight"], mnv2["Δ"]) == (
        "pending",
        "failed",
        "—",
    )
    assert mnv2["paper (baseline → SSLight)"] == "66.2 → 68.3 (+2.1)"
    swav_knn = _row(rows, "swav", "mobilenet_v2", "k-NN top-1")
    assert swav_knn["baseline"] == "9.0 (collapsed)" and swav_knn["SSLight"] == "30.0"
    swav_linear = _row(rows, "swav", "mobilenet_v2", "linear top-1")
    assert (swav_linear["baseline"], swav_linear["SSLight"]) == ("collapsed at epoch 3", "running")
    assert swav_linear["floors (random-init / pixels)"] == "—"


def test_downstream_table_only_for_grids_with_downstream_stages(paper_grid, tmp_path, capsys):
    out = _report(paper_grid, capsys, "--grid", "paper")
    rows = _table(out, "Downstream: semi-supervised top-1 and COCO AP")
    semi = _row(rows, "dino", "resnet18", "semi 1 % top-1")
    assert semi["baseline"] == "46.0 ± 1.4 (n=2)" and semi["SSLight"] == "50.0 ± 0.0 (n=2)"
    assert semi["Δ"] == "+4.0"
    assert semi["paper (baseline → SSLight)"] == "44.5 → 49.8 (+5.3)"
    assert {r["metric"] for r in rows} == {"semi 1 % top-1", "semi 10 % top-1"}  # no COCO stage
    assert {r["backbone"] for r in rows} == {"resnet18"}  # the MNv2 cells run no semi stage

    cells = [_cell(tmp_path, "dino", "resnet34", p) for p in ("baseline", "sslight")]
    with _register(tmp_path, "pretrain_only", cells) as registry:
        for cell in cells:
            registry.set_status(cell["key"], "finished")
            registry.record_result(cell["key"], {"linear_top1": 66.0, "knn_top1": 60.0})
    out = _report(paper_grid, capsys, "--grid", "pretrain_only")
    assert "Downstream" not in out and "floors" not in out
    assert _row(_table(out, "Pretraining: linear and k-NN top-1"), "dino", "resnet34",
                "linear top-1")["paper (baseline → SSLight)"] == "67.7 → 69.7 (+2.0)"  # fmt: skip


def test_each_table_says_which_network_head_and_precision_its_numbers_come_from(tmp_path, capsys):
    cells = [_cell(tmp_path, "dino", "resnet18", p) for p in ("baseline", "sslight")]
    for cell in cells:
        cell["config"]["eval"] = {"network": "student", "semi": {"head": "mlp"}}
        cell["config"]["train"]["precision"] = "fp32"
    with _register(tmp_path, "protocol", cells) as registry:
        for cell in cells:
            registry.set_status(cell["key"], "finished")
            registry.record_result(
                cell["key"], {"linear_top1": 66.0, "knn_top1": 60.0, "semi_1_top1": 40.0}
            )
    out = _report(tmp_path / "runs", capsys, "--grid", "protocol")
    pretraining, downstream = out.split("### Downstream", 1)
    assert "Evaluated as: evaluated network student; precision fp32." in pretraining
    said = "Evaluated as: evaluated network student; semi-supervised head mlp; precision fp32."
    assert said in downstream


def test_box_ap_prefers_the_segmentation_stage_and_extra_axes_become_columns(tmp_path, capsys):
    cells = [_cell(tmp_path, "dino", "mobilenet_v2", "sslight", epochs=e) for e in (1, 3)]
    with _register(tmp_path, "coco", cells) as registry:
        for cell, box in zip(cells, (10.0, 20.0), strict=True):
            registry.set_status(cell["key"], "finished")
            registry.record_result(
                cell["key"],
                {"detection_box_ap": 1.0, "segmentation_box_ap": box, "segmentation_mask_ap": 8.0},
            )
    out = _report(tmp_path / "runs", capsys, "--grid", "coco")
    rows = _table(out, "Downstream: semi-supervised top-1 and COCO AP")
    box = [r for r in rows if r["metric"] == "COCO box AP"]
    assert [(r["train.epochs"], r["SSLight"]) for r in box] == [("1", "10.0"), ("3", "20.0")]
    assert box[0]["paper (baseline → SSLight)"] == "30.9 → 32.1 (+1.2)"
    assert "Δ" not in box[0]  # one policy only: nothing to subtract


def test_a_cell_says_how_many_seeds_it_averages_and_which_collapsed_or_are_missing():
    assert format_stat(Stat((8.0, 9.0), (), collapsed=1)).text == "8.5 ± 0.7 (n=2; 1 collapsed)"
    assert format_stat(Stat((60.0,), ("running",))).text == "60.0 (n=1; running)"
    assert format_stat(Stat((), ("failed", "failed", "pending"))).text == "2 failed, pending"
    assert format_stat(Stat()).text == "—"  # no such cell in the grid


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_html_is_self_contained_and_plots_are_valid_pngs(paper_grid, capsys):
    out = _report(paper_grid, capsys, "--grid", "paper")
    folder = paper_grid / "paper" / "report"
    assert f"{folder / 'report.html'}" in out
    html = (folder / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "<script" not in html
    assert re.findall(r"<img[^>]*>", html) and all(
        'src="data:image/png;base64,' in tag for tag in re.findall(r"<img[^>]*>", html)
    )
    pngs = [folder / f"paper-{n}.png" for n in ("pretraining", "downstream", "curves")]
    assert len(_images(html)) == len(pngs)
    markdown = (folder / "report.md").read_text()
    for png in pngs:
        assert f"]({png.name})" in markdown
        with Image.open(png) as image:
            image.verify()
    with Image.open(pngs[0]) as image:
        assert image.format == "PNG" and min(image.size) > 200
    with_curves = [c for c in (paper_grid / "paper" / "cells").iterdir() if "resnet18" in c.name]
    for cell in with_curves:
        with Image.open(cell / "report" / "training_curves.png") as image:
            image.verify()
    assert not (paper_grid / "paper" / "cells" / "dino-mobilenet_v2-baseline-s0").exists()


def test_bad_and_empty_input_exit_2_naming_what_exists(paper_grid, tmp_path, capsys):
    assert main(["report", "--root", str(paper_grid), "--grid", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--grid" in err and "'nope'" in err and "known grids: paper" in err
    assert main(["report", "--root", str(tmp_path / "empty")]) == 2
    assert "no grids in the registry" in capsys.readouterr().err


def test_all_grids_go_to_the_root_and_a_search_grid_shows_only_its_sections(
    paper_grid, tmp_path, capsys, monkeypatch
):
    def search_section(registry, grid, out_dir):
        if grid.spec.get("kind") != "search":
            return None
        image = out_dir / "importance.png"
        Image.new("RGB", (40, 30), "white").save(image)
        return Section("Search", "best: lr=0.1\n", "<p>best: lr=0.1</p>", (image,))

    def broken_section(registry, grid, out_dir):
        raise RuntimeError("storage unreachable")

    # the real search section registers itself on import (as `orchestrate report` does); first,
    # so that the sections of this test replace it
    importlib.import_module("orchestrator.search.report_section")
    monkeypatch.setattr(
        sections,
        "SECTIONS",
        {"problems": sections.problems, "search": search_section, "broken": broken_section},
    )
    cells = [_cell(tmp_path, "dino", "resnet18", "sslight", seed=s) for s in (7, 8)]
    with _register(tmp_path, "views_search", cells, spec={"kind": "search"}) as registry:
        registry.set_status(cells[0]["key"], "finished")
        registry.record_result(cells[0]["key"], {"linear_top1": 50.0})
    out = _report(paper_grid, capsys, "--out", str(tmp_path / "all"))
    markdown = (tmp_path / "all" / "report.md").read_text()
    paper, search = markdown.split("## Grid `views_search`")
    assert "## Grid `paper`" in paper and "### Pretraining" in paper
    assert "### Pretraining" not in search and "### Search\n\nbest: lr=0.1" in search
    assert "### Cells that need attention" in paper and "DataRootError" in paper
    assert "`swav-mobilenet_v2-baseline-s0`: collapsed at epoch 3 — entropy" in paper
    assert "](importance.png)" in search and str(tmp_path / "all" / "report.html") in out
    assert "### Section 'broken' failed" in search and "RuntimeError: storage unreachable" in search
    assert len(_images((tmp_path / "all" / "report.html").read_text())) == 4

    assert main(["report", "--root", str(paper_grid)]) == 0  # default: <root>/report
    assert (paper_grid / "report" / "report.html").is_file()


@pytest.mark.slow
def test_a_tiny_grid_runs_and_reports(tmp_path, capsys):
    base = {**TINY_RUN, "eval": {"knn": {"monitor": True}}}
    path = tmp_path / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "workdir": str(tmp_path / "runs" / "tiny"),
                "base": base,
                "axes": {"views.policy": ["baseline", "sslight"]},
            }
        )
    )
    root = tmp_path / "runs"
    assert main(["grid", str(path), "--root", str(root), "--executor", "debug"]) == 0
    out = _report(root, capsys, "--grid", "tiny")
    [knn] = _table(out, "Pretraining: linear and k-NN top-1")
    for policy in ("baseline", "SSLight"):
        assert 0 <= float(knn[policy]) <= 100
    assert float(knn["Δ"]) == pytest.approx(
        float(knn["SSLight"]) - float(knn["baseline"]), abs=0.11
    )
    assert "paper (baseline → SSLight)" not in knn  # the paper's DINO R18 number is linear top-1
    assert (root / "tiny" / "report" / "tiny-curves.png").is_file()
    for cell in ("baseline", "sslight"):
        assert (root / "tiny" / "cells" / cell / "report" / "training_curves.png").is_file()
