"""The SQL registry (db/): round trips, migrations, and concurrency with real processes."""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import random
import subprocess
import sys
import traceback
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from db import RegistryError, default_url, mask_url, open_registry, resolve_url
from db.models import Base
from db.registry import ERROR_TAIL_CHARS
from db.session import _migrate, create_registry_engine

# Fork is fast; callers close their engines first so no SQLite connection crosses a fork.
MP = mp.get_context("fork" if sys.platform == "linux" else "spawn")
ROOT = Path(__file__).resolve().parents[1]


def cells(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"key": f"{i:016x}", "name": f"cell{i}", "config": {"seed": i}, "output_dir": f"r/{i}"}
        for i in range(start, start + n)
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each backend (PostgreSQL: see conftest's postgres_url)."""
    if request.param == "sqlite":
        return default_url(tmp_path)
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def registry(url: str):
    with open_registry(url) as reg:
        yield reg


def query(url: str, sql: str) -> list[tuple]:
    """Raw SQL straight at the database, bypassing the registry."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


# -- URLs ------------------------------------------------------------------------------


def test_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSLIGHT_DB_URL", raising=False)
    assert default_url(tmp_path) == f"sqlite:///{tmp_path}/registry.db"
    assert resolve_url(None, tmp_path) == default_url(tmp_path)
    monkeypatch.setenv("SSLIGHT_DB_URL", "postgresql://u@h/env")
    assert resolve_url(None, tmp_path) == "postgresql://u@h/env"
    assert resolve_url("postgresql://u@h/cli", tmp_path) == "postgresql://u@h/cli"
    assert resolve_url(str(tmp_path / "x.db"), tmp_path) == f"sqlite:///{tmp_path}/x.db"


def test_mask_url_hides_passwords() -> None:
    masked = mask_url("postgresql://user:secret@host/db")
    assert "secret" not in masked
    assert masked == "postgresql://user:***@host/db"
    assert mask_url("sqlite:////tmp/r.db") == "sqlite:////tmp/r.db"
    assert "s3cr3t" not in mask_url("not a url ://me:s3cr3t@host")


def test_unusable_url_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError) as info:
        open_registry("nosuchdialect://user:secret@host/db")
    assert "secret" not in str(info.value)
    assert "user:***@host" in str(info.value)
    (tmp_path / "registry.db").write_bytes(b"not a database" * 100)
    with pytest.raises(RegistryError, match=r"cannot open registry at sqlite:///.*not a database"):
        open_registry(default_url(tmp_path))


# -- schema ----------------------------------------------------------------------------


def test_migrated_schema_matches_models(registry) -> None:
    assert registry.migrated
    with registry.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert MigrationContext.configure(conn).get_current_heads() == ("0002",)
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    with open_registry(registry.url) as again:
        assert not again.migrated


def test_alembic_command_line_uses_the_same_migrations(tmp_path: Path) -> None:
    url = default_url(tmp_path)
    for args in (["upgrade", "head"], ["check"]):
        cmd = [sys.executable, "-m", "alembic", "-c", "db/alembic.ini", "-x", f"url={url}"]
        done = subprocess.run(cmd + args, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert query(url, "SELECT version_num FROM alembic_version") == [("0002",)]


def test_newer_schema_is_refused_with_masked_url(registry, url: str) -> None:
    query(url, "UPDATE alembic_version SET version_num = 'ffff00000001'")
    with pytest.raises(RegistryError, match=r"revision ffff00000001, newer .*head 0002"):
        open_registry(url)
    engine = create_registry_engine(url)  # the message names the URL it was given, masked
    try:
        with pytest.raises(RegistryError) as info:
            _migrate(engine, "postgresql://user:secret@host/db")
    finally:
        engine.dispose()
    assert "postgresql://user:***@host/db" in str(info.value)
    assert "secret" not in str(info.value)


# -- round trips -----------------------------------------------------------------------


def test_grids_and_runs_round_trip(registry) -> None:
    gid = registry.upsert_grid("table1", "experiments/table1.yaml", "/w", {"a": 1})
    assert registry.upsert_grid("table1", "t1.yaml", "/w2", {"a": 2}) == gid
    (grid,) = registry.grids()
    assert (grid.name, grid.source, grid.workdir) == ("table1", "t1.yaml", "/w2")
    assert grid.spec == {"a": 2}
    other = registry.upsert_grid("other", "o.yaml", "/w", {})

    assert registry.add_runs(gid, cells(3) + cells(1)) == [c["key"] for c in cells(3)]
    registry.set_status(cells(1)[0]["key"], "failed", error="x")
    assert registry.add_runs(gid, cells(4)) == [cells(1, start=3)[0]["key"]]  # idempotent
    assert registry.add_runs(other, cells(4)) == []  # existing keys untouched
    runs = registry.runs()
    assert [r.key for r in runs] == [c["key"] for c in cells(4)]
    assert runs[0].status == "failed" and runs[0].error == "x" and runs[0].grid == "table1"
    assert runs[1].config == {"seed": 1} and runs[1].output_dir == "r/1"
    assert runs[1].status == "pending" and runs[1].stage is None and runs[1].result is None
    assert runs[1].created_at.tzinfo == timezone.utc
    assert registry.runs(grid_name="other") == []
    assert [r.key for r in registry.runs(statuses=["failed"])] == [runs[0].key]
    assert registry.run(runs[2].key) == runs[2]
    assert registry.run("nope") is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        runs[0].status = "finished"  # type: ignore[misc]
    with pytest.raises(RegistryError, match="no grid"):
        registry.add_runs(999, cells(1, start=10))


def test_status_stage_result_and_mlflow_id(registry) -> None:
    key = cells(1)[0]["key"]
    registry.add_runs(registry.upsert_grid("g", "g.yaml", "/w", {}), cells(1))
    registry.set_status(key, "running", stage="pretrain")
    registry.set_stage(key, "knn")
    registry.record_result(key, {"knn_top1": 10.0})
    registry.record_result(key, {"linear_top1": 20.0})
    registry.set_mlflow_run_id(key, "abc123")
    registry.set_status(key, "finished")
    run = registry.run(key)
    assert (run.status, run.stage, run.mlflow_run_id) == ("finished", "knn", "abc123")
    assert run.result == {"knn_top1": 10.0, "linear_top1": 20.0}
    assert run.updated_at >= run.created_at
    registry.record_result(key, {"only": 1.0}, merge=False)
    registry.set_stage(key, None)
    assert registry.run(key).result == {"only": 1.0} and registry.run(key).stage is None
    with pytest.raises(ValueError, match="unknown status"):
        registry.set_status(key, "exploded")
    with pytest.raises(RegistryError, match="no run"):
        registry.set_status("f" * 16, "running")


def test_attempts_round_trip(registry) -> None:
    key = cells(1)[0]["key"]
    registry.add_runs(registry.upsert_grid("g", "g.yaml", "/w", {}), cells(1))
    first = registry.start_attempt(key, "slurm", job_id="42", state="submitted")
    registry.update_attempt(first, state="running", node="gpu-01")
    registry.finish_attempt(first, "failed", error_tail="x" * (ERROR_TAIL_CHARS + 10) + "END")
    second = registry.start_attempt(key, "local", job_id="1234", node="laptop")
    registry.finish_attempt(second, "finished")
    a, b = registry.attempts(key)
    assert (a.id, a.executor, a.job_id) == (first, "slurm", "42")
    assert (a.node, a.state) == ("gpu-01", "failed")
    assert len(a.error_tail) == ERROR_TAIL_CHARS and a.error_tail.endswith("END")
    assert a.ended_at >= a.started_at and a.started_at.tzinfo == timezone.utc
    assert (b.executor, b.state, b.error_tail) == ("local", "finished", None)
    with pytest.raises(ValueError, match="unknown executor"):
        registry.start_attempt(key, "kubernetes")
    with pytest.raises(RegistryError, match="no attempt"):
        registry.finish_attempt(999, "finished")


def test_claim_moves_only_claimable_runs(registry) -> None:
    keys = [c["key"] for c in cells(5)]
    registry.add_runs(registry.upsert_grid("g", "g.yaml", "/w", {}), cells(5))
    registry.set_status(keys[1], "running", stage="pretrain")
    registry.set_status(keys[2], "failed", stage="knn", error="boom")
    registry.set_status(keys[3], "finished")
    assert registry.claim_for_submission([*keys, "f" * 16]) == [keys[0], keys[2], keys[4]]
    assert registry.claim_for_submission(keys) == []
    failed = registry.run(keys[2])
    assert (failed.status, failed.stage, failed.error) == ("submitted", None, None)
    registry.set_status(keys[3], "finished")
    assert registry.claim_for_submission(keys, allowed_statuses=["finished"]) == [keys[3]]


# -- concurrency with real processes ---------------------------------------------------


def _report(queue: Any, fn: Any, *args: Any) -> None:
    try:
        queue.put(("ok", fn(*args)))
    except BaseException:
        queue.put(("error", traceback.format_exc()))


def _writer(url: str, key: str, n: int, barrier: Any) -> int:
    with open_registry(url) as reg:
        barrier.wait()
        for i in range(n):
            attempt = reg.start_attempt(key, "local", job_id=str(i), node="node")
            reg.set_status(key, "running", stage=f"stage{i}")
            reg.finish_attempt(attempt, "finished" if i % 2 else "failed", error_tail=f"e{i}")
    return n


def _claimer(url: str, keys: list[str], seed: int, barrier: Any) -> list[str]:
    rng = random.Random(seed)
    keys = rng.sample(keys, len(keys))
    claimed: list[str] = []
    with open_registry(url) as reg:
        barrier.wait()
        while keys:
            size = rng.randint(1, 4)
            batch, keys = keys[:size], keys[size:]
            claimed += reg.claim_for_submission(batch)
    return claimed


def _opener(url: str, barrier: Any) -> bool:
    barrier.wait()
    with open_registry(url) as reg:
        reg.runs()
        return reg.migrated


def _race(target: Any, argss: list[tuple]) -> list[Any]:
    """Start one process per args tuple (all released by one barrier); return their results."""
    barrier, queue = MP.Barrier(len(argss)), MP.Queue()
    procs = [MP.Process(target=_report, args=(queue, target, *a, barrier)) for a in argss]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    errors = [r for kind, r in results if kind == "error"]
    assert not errors, errors[0]
    return [r for _, r in results]


def seed(url: str, n: int) -> list[str]:
    """A registry at ``url`` with ``n`` pending runs, closed again; return their keys."""
    with open_registry(url) as reg:
        reg.add_runs(reg.upsert_grid("g", "g.yaml", "/w", {}), cells(n))
    return [c["key"] for c in cells(n)]


def test_many_concurrent_writers(url: str) -> None:
    n_procs, n = 16, 50
    keys = seed(url, n_procs)
    assert _race(_writer, [(url, k, n) for k in keys]) == [n] * n_procs
    with open_registry(url) as registry:
        for key in keys:
            attempts = registry.attempts(key)
            assert [a.job_id for a in attempts] == [str(i) for i in range(n)]
            assert all(a.ended_at is not None for a in attempts)
            assert registry.run(key).stage == f"stage{n - 1}"
    assert query(url, "SELECT count(*) FROM attempts") == [(n_procs * n,)]


def test_concurrent_claims_claim_each_key_once(url: str) -> None:
    keys = seed(url, 20)
    claimed = _race(_claimer, [(url, keys, i) for i in range(8)])
    flat = [k for per_proc in claimed for k in per_proc]
    assert sorted(flat) == sorted(keys)  # every key claimed, none twice
    assert query(url, "SELECT DISTINCT status FROM runs") == [("submitted",)]


def test_concurrent_first_opens_migrate_once(url: str) -> None:
    assert sorted(_race(_opener, [(url,)] * 6)) == [False] * 5 + [True]
    assert query(url, "SELECT version_num FROM alembic_version") == [("0002",)]


def test_a_registry_of_the_first_schema_migrates_and_keeps_its_runs(tmp_path: Path) -> None:
    """A registry written before stage jobs opens at head: its runs are cells, nothing lost."""
    url = default_url(tmp_path)
    cmd = [sys.executable, "-m", "alembic", "-c", "db/alembic.ini", "-x", f"url={url}"]
    done = subprocess.run([*cmd, "upgrade", "0001"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    query(
        url,
        "INSERT INTO grids (name, source, workdir, spec, created_at) "
        "VALUES ('g', 'g.yaml', 'runs/g', '{}', '2026-01-01')",
    )
    query(
        url,
        "INSERT INTO runs (grid_id, key, name, config, status, output_dir, created_at, "
        "updated_at) VALUES (1, 'k1', 'cell', '{}', 'finished', 'runs/g/cells/cell', "
        "'2026-01-01', '2026-01-01')",
    )
    with open_registry(url) as registry:
        assert registry.migrated
        run = registry.run("k1")
        assert (run.status, run.kind, run.depends_on, run.pretrain_key) == (
            "finished",
            "cell",
            None,
            None,
        )
    assert query(url, "SELECT version_num FROM alembic_version") == [("0002",)]
