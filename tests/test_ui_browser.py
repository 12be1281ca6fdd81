"""``orchestrate ui`` end to end: the MLflow UI of a finished grid in headless Chromium, the
Optuna dashboard of a journal file, and the command's answers to bad input."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from pathlib import Path

import pytest
from mlflow_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    grid_runs,
    interrupt,
    run_grid,
    service_missing,
    start_cli,
    wait_for_line,
    write_grid,
)

from orchestrator.cli import main

SCREENSHOT = Path(__file__).resolve().parents[1] / "test-artifacts" / "mlflow-ui.png"
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The ``--root`` of a finished two-cell grid named "tiny" (cells "baseline", "sslight")."""
    folder = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        grid = write_grid(folder, policies=("baseline", "sslight"), epochs=1)
        assert run_grid(grid, folder / "runs") == 0
    return folder / "runs"


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    """A page of headless Chromium with a fresh profile (the machine is offline)."""
    if not CHROMIUM.exists():
        service_missing(f"no Chromium at {CHROMIUM} (Debian package `chromium`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_missing("the playwright package is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1400},
        )
        yield context.new_page()
        context.close()


def test_the_mlflow_ui_shows_the_grid_its_runs_and_their_metrics(finished, browser_page):
    store = f"sqlite:///{finished / 'mlflow.db'}"
    runs = {r.info.run_name: r for r in grid_runs(store, "tiny")}
    # each cell's shared pretraining is a run (the curves), the cell its child (the evaluations)
    assert set(runs) == {"baseline", "sslight", "pretrain:baseline", "pretrain:sslight"}
    pretraining, cell = runs["pretrain:sslight"], runs["sslight"]
    assert cell.data.tags["mlflow.parentRunId"] == pretraining.info.run_id
    ui = start_cli("ui", "--root", str(finished), "--port", str(free_port()), "--grid", "tiny")
    try:
        line = wait_for_line(ui, "grid tiny: ")
        experiment_url = line.removeprefix("grid tiny: ")
        page = browser_page
        page.goto(experiment_url, timeout=TIMEOUT_MS)
        run_links = page.locator("a[href*='/runs/']")
        for name in ("pretrain:baseline", "pretrain:sslight"):
            run_links.filter(has_text=re.compile(f"^{name}$")).first.wait_for(timeout=TIMEOUT_MS)
        assert page.get_by_text("tiny").first.is_visible()

        run_links.filter(has_text=re.compile("^pretrain:sslight$")).first.click()
        page.wait_for_url(f"**/runs/{pretraining.info.run_id}*", timeout=TIMEOUT_MS)
        loss = pretraining.data.metrics["loss"]
        row = page.get_by_role("row").filter(has=page.get_by_text("loss", exact=True))
        row.filter(has_text=repr(loss)).first.wait_for(timeout=TIMEOUT_MS)

        # the cell's run page: the same address with the child's id
        page.goto(page.url.replace(pretraining.info.run_id, cell.info.run_id), timeout=TIMEOUT_MS)
        page.get_by_text("knn_top1", exact=True).first.wait_for(timeout=TIMEOUT_MS)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
    finally:
        code = interrupt(ui)
    assert code == 0  # Ctrl-C stops the server and the command cleanly


def test_ui_without_a_store_is_bad_input(tmp_path, capsys):
    assert main(["ui", "--root", str(tmp_path / "none"), "--port", str(free_port())]) == 2
    assert "no MLflow store at" in capsys.readouterr().err


def test_ui_for_an_unknown_grid_is_bad_input(finished, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    port = str(free_port())
    assert main(["ui", "--root", str(finished), "--port", port, "--grid", "nope"]) == 2
    assert "no MLflow experiment named 'nope' (experiments: tiny)" in capsys.readouterr().err


def test_ui_on_a_port_in_use_is_bad_input(finished, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["ui", "--root", str(finished), "--port", port]) == 2
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err


def test_optuna_ui_without_the_journal_is_bad_input(tmp_path, capsys):
    assert main(["ui", "--optuna", str(tmp_path / "search.log")]) == 2
    assert "no such Optuna storage file" in capsys.readouterr().err


def test_optuna_ui_serves_a_journal_file(tmp_path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "search.log"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="views", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    port = free_port()
    ui = start_cli("ui", "--optuna", str(journal), "--port", str(port))
    try:
        wait_for_line(ui, "Optuna dashboard: ", timeout_s=120)
        api = f"http://127.0.0.1:{port}/api/studies"
        with urllib.request.urlopen(api, timeout=10) as answer:
            [study] = json.load(answer)["study_summaries"]
        with urllib.request.urlopen(f"{api}/{study['study_id']}", timeout=10) as answer:
            trials = json.load(answer)["trials"]
    finally:
        assert interrupt(ui) == 0
    assert study["study_name"] == "views" and len(trials) == 2
