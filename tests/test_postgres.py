"""PostgreSQL at scale: the registry's connections and Optuna's RDB storage on a real server.

The registry's own suite (tests/test_registry.py) runs on PostgreSQL too; these are the parts
only a server shows: dropped connections, several Optuna workers on one study, the CLI's output.
"""

from __future__ import annotations

import multiprocessing as mp
import sys

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from db import RegistryError, open_registry
from orchestrator.cli import main

MP = mp.get_context("fork" if sys.platform == "linux" else "spawn")


def _terminate_other_connections(url: str) -> int:
    """Kill every other backend on the database, as a server restart or a proxy timeout would."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).all()
            )
    finally:
        engine.dispose()


def test_the_registry_survives_its_connections_being_dropped(postgres_url: str) -> None:
    with open_registry(postgres_url) as registry:
        grid = registry.upsert_grid("g", "g.yaml", "/w", {})
        registry.add_runs(grid, [{"key": "k1", "name": "c", "config": {}, "output_dir": "r"}])
        assert _terminate_other_connections(postgres_url) >= 1  # the registry's pooled one
        # pool_pre_ping notices the dead connection and opens a new one: no error surfaces.
        registry.set_status("k1", "running")
        assert registry.run("k1").status == "running"


def _optuna_worker(url: str, study: str, trials: int) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    loaded = optuna.create_study(study_name=study, storage=url, load_if_exists=True)
    loaded.optimize(lambda trial: (trial.suggest_float("x", -1, 1) - 0.25) ** 2, n_trials=trials)


def test_optuna_rdb_storage_shares_one_study_between_two_processes(postgres_url: str) -> None:
    import optuna

    # The URL form scripts/postgres-local.sh prints (postgresql+psycopg://user:password@...)
    # works for Optuna as it does for the registry; create the study once, then two workers.
    assert make_url(postgres_url).drivername == "postgresql+psycopg"
    optuna.create_study(study_name="views", storage=postgres_url)
    workers = [MP.Process(target=_optuna_worker, args=(postgres_url, "views", 6)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]

    study = optuna.load_study(study_name="views", storage=postgres_url)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 12
    assert sorted(t.number for t in trials) == list(range(12)), "trial numbers unique"
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # Optuna's Alembic revision sits in the same alembic_version table as the registry's
    # would: pointing the registry at Optuna's database is refused, and says why.
    with pytest.raises(RegistryError, match="give the registry a database of its own"):
        open_registry(postgres_url)
    assert len(optuna.load_study(study_name="views", storage=postgres_url).trials) == 12


def test_orchestrate_on_postgres_never_prints_the_password(
    postgres_url: str, tmp_path, capsys, caplog: pytest.LogCaptureFixture
) -> None:
    password = make_url(postgres_url).password
    assert password
    caplog.set_level("DEBUG")
    assert main(["status", "--db", postgres_url, "--json"]) == 0  # migrates: logs the registry
    assert main(["status", "--db", postgres_url]) == 0
    out = capsys.readouterr()
    shown = out.out + out.err + caplog.text
    assert "schema migrated" in caplog.text
    assert str(password) not in shown


def test_a_bare_postgresql_url_uses_the_installed_driver(postgres_url: str) -> None:
    """``postgresql://`` as users write it (psycopg2 is not installed) opens on psycopg 3."""
    bare = "postgresql://" + postgres_url.split("://", 1)[1]
    with open_registry(bare) as registry:
        assert registry.engine.url.drivername == "postgresql+psycopg"
        assert registry.runs() == []
