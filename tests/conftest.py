"""Shared fixtures: tiny run configs on the synthetic source (CPU, seconds)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import TINY_CORE

from sslight.config import resolve
from sslight.config.load import deep_merge


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _floor_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluation floors are cached in a per-session directory, never in ~/.cache."""
    monkeypatch.setenv("SSLIGHT_CACHE", str(tmp_path_factory.getbasetemp() / "sslight-cache"))


def tiny_run(output_dir: Any, **overrides: Any) -> Any:
    """A DINO run on 32 px synthetic images, small head, a few steps; ``overrides`` nest."""
    raw = deep_merge(
        TINY_CORE,
        {
            "views": {"policy": "sslight"},
            "train": {"log_every_steps": 1},
            "output_dir": str(output_dir),
        },
    )
    return resolve(deep_merge(raw, overrides), source="test")


@pytest.fixture
def make_run() -> Callable[..., Any]:
    return tiny_run


def _service_missing(reason: str) -> None:
    """In CI a missing service is a failure; on a laptop the test is skipped with the reason."""
    if os.environ.get("CI"):
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The SLURM config of a running cluster (`make test` starts scripts/slurm-local.sh)."""
    conf = os.environ.get("SLURM_CONF", "")
    if not conf or not shutil.which("sinfo"):
        _service_missing("no SLURM cluster: run `scripts/slurm-local.sh start` as root")
    up = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if up.returncode != 0 or not up.stdout.strip():
        _service_missing(f"SLURM at {conf} does not answer: {up.stderr.strip()}")
    return conf


POSTGRES_ENV = "SSLIGHT_TEST_POSTGRES_URL"
POSTGRES_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres-local.sh"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """A database URL on a running PostgreSQL server whose role may create databases:
    ``$SSLIGHT_TEST_POSTGRES_URL``, else scripts/postgres-local.sh's (`make test` starts it)."""
    from sqlalchemy import create_engine, text

    url = (
        os.environ.get(POSTGRES_ENV)
        or subprocess.run(
            ["bash", str(POSTGRES_SCRIPT), "url", "sslight_test"], capture_output=True, text=True
        ).stdout.strip()
    )
    try:
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as err:  # driver missing, server down, bad password: all "no server"
        from db import mask_url

        _service_missing(
            f"no PostgreSQL at {mask_url(url)} ({type(err).__name__}): run "
            "`scripts/postgres-local.sh start` as root or set $SSLIGHT_TEST_POSTGRES_URL"
        )
    return url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    from registry_helpers import fresh_database

    with fresh_database(postgres_server, "sslight_t") as url:
        yield url
