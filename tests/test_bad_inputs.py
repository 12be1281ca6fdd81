"""The bad-input corpus (tests/bad_inputs/cases.yaml): every broken config, grid, checkpoint or
registry gets one clear message and exit 2 from the real CLIs, and changes nothing recorded."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from db import default_url, open_registry
from orchestrator.cli import main as orchestrate
from sslight.cli import main as sslight

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
CASES: list[dict[str, Any]] = yaml.safe_load((CORPUS / "cases.yaml").read_text())
CLIS = {"sslight": sslight, "orchestrate": orchestrate}
SECRET = "hunter2"  # the password in the corpus's database URL: never printed


def _case_id(case: dict[str, Any]) -> str:
    return f"{case['cli']}-{case['argv'][0]}-{case['file']}"


@pytest.fixture(scope="module")
def earlier_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir with an earlier grid's registry rows and one run directory's files."""
    root = tmp_path_factory.mktemp("earlier")
    run_dir = root / "earlier" / "cells" / "c0"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("method: dino\nbackbone: resnet18\n")
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"weights of an earlier run")
    (run_dir / "metrics.jsonl").write_text('{"step": 0, "loss": 8.3}\n')
    (run_dir / "result.json").write_text(json.dumps({"knn_top1": 41.5}))
    with open_registry(default_url(root)) as registry:
        grid = registry.upsert_grid("earlier", "earlier.yaml", str(root / "earlier"), {})
        cells = [
            {"key": f"{i:016x}", "name": f"c{i}", "config": {"seed": i}, "output_dir": str(run_dir)}
            for i in range(2)
        ]
        registry.add_runs(grid, cells)
        attempt = registry.start_attempt(cells[0]["key"], "local", job_id="1", node="n")
        registry.finish_attempt(attempt, "finished")
        registry.record_result(cells[0]["key"], {"knn_top1": 41.5})
        registry.set_status(cells[0]["key"], "finished")
        registry.set_status(cells[1]["key"], "failed", error="earlier failure")
    return root


def _registry_rows(path: Path) -> Any:
    """Every row of every table, read without the registry code (or the raw bytes if the file
    is no database at all)."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            return {
                t: conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for t in tables
            }
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(root: Path) -> dict[str, Any]:
    files = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("registry.db")
    }
    return {"files": files, "registry": _registry_rows(root / "registry.db")}


def _prepare(case: dict[str, Any], root: Path, fresh: Path) -> None:
    setup = case.get("setup") or {}
    if "checkpoint" in setup:
        (fresh / "checkpoints").mkdir(parents=True)
        for name in ("last.pt", "prev.pt"):
            shutil.copy(CORPUS / setup["checkpoint"], fresh / "checkpoints" / name)
    if "registry" in setup:
        for leftover in root.glob("registry.db*"):
            leftover.unlink()
        shutil.copy(CORPUS / setup["registry"], root / "registry.db")
    if setup.get("newer_schema"):
        conn = sqlite3.connect(root / "registry.db")
        with conn:
            conn.execute("UPDATE alembic_version SET version_num = 'ffff00000001'")
        conn.close()


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_is_one_message_exit_2_and_changes_nothing(
    case: dict[str, Any], earlier_work: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("SSLIGHT_DB_URL", raising=False)
    monkeypatch.delenv("SSLIGHT_BAD_INPUTS_UNSET", raising=False)
    monkeypatch.chdir(tmp_path)
    root, fresh = tmp_path / "root", tmp_path / "fresh"
    shutil.copytree(earlier_work, root)
    fresh.mkdir()
    _prepare(case, root, fresh)
    places = {"dir": str(CORPUS), "root": str(root), "fresh": str(fresh)}
    places["run"] = str(root / "earlier" / "cells" / "c0")
    argv = [arg.format(**places) for arg in case["argv"]]
    before, fresh_before = _snapshot(root), _snapshot(fresh)
    capsys.readouterr()

    try:
        code = CLIS[case["cli"]](argv)
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    out, err = capsys.readouterr()

    assert code == 2, f"exit {code}; stderr:\n{err}"
    messages = [line for line in err.splitlines() if ": error: " in line]
    assert len(messages) == 1, err
    for fragment in case["expect"]:
        assert fragment in messages[0], f"{fragment!r} not in {messages[0]!r}"
    assert "Traceback" not in err and SECRET not in out + err
    assert _snapshot(root) == before, "a rejected command changed recorded work"
    fresh_after = _snapshot(fresh)
    assert (
        fresh_after["files"].items()
        >= {k: v for k, v in fresh_before["files"].items() if k.startswith("checkpoints")}.items()
    ), "an unreadable checkpoint was replaced or deleted"


def test_every_corpus_file_is_used() -> None:
    used = {c["file"] for c in CASES} | {"cases.yaml", "grid_override_sets_axis.yaml"}
    assert {p.name for p in CORPUS.iterdir()} <= used
    assert len(CASES) >= 40
