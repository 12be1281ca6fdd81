"""``orchestrate search``: Optuna studies over the view policy on a real journal file, a real
SQLite registry and real submitit workers (tiny synthetic runs, CPU)."""

from __future__ import annotations

import copy
import json
import signal
import threading
import time
from pathlib import Path

import optuna
import psutil
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from registry_helpers import root_registry
from tiny import TINY_RUN

from orchestrator.cli import main

BASELINE = {"scale_boundary": 0.14, "local_size": 96, "local_number": 6, "global_global": 2 / 14}
SSLIGHT = {"scale_boundary": 0.3, "local_size": 128, "local_number": 6, "global_global": 0.4}
SPACE = {
    "scale_boundary": {"low": 0.1, "high": 0.5},
    "local_size": {"low": 64, "high": 160, "step": 16},
    "local_number": {"low": 2, "high": 6},
    "global_global": {"low": 0.05, "high": 0.6},
}


def _base() -> dict:
    base = copy.deepcopy(TINY_RUN)
    del base["views"]
    base["eval"] = {"knn": {"monitor": True, "monitor_every_epochs": 1}}
    return base


def _search(tmp_path: Path, name: str = "views", **changes) -> Path:
    doc = {
        "name": name,
        "workdir": str(tmp_path / "runs" / name),
        "base": _base(),
        "budget": {"trials": 4, "epochs": 2},
        "sampler": {"kind": "tpe", "seed": 0},
        "pruner": {"kind": "median", "n_startup_trials": 1},
        "space": SPACE,
        **changes,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _study(tmp_path: Path, name: str = "views") -> optuna.Study:
    journal = tmp_path / "runs" / name / "study.journal"
    return optuna.load_study(
        study_name=name, storage=JournalStorage(JournalFileBackend(str(journal)))
    )


def _rows(tmp_path: Path, study: optuna.Study) -> dict[int, object]:
    with root_registry(tmp_path) as registry:
        rows = {run.key: run for run in registry.runs(grid_name=study.study_name)}
    trials = [t for t in study.trials if "registry_key" in t.user_attrs]  # waiting ones have none
    return {t.number: rows[t.user_attrs["registry_key"]] for t in trials}


def _same(params: dict, expected: dict) -> bool:
    return params.keys() == expected.keys() and all(
        params[k] == pytest.approx(v) for k, v in expected.items()
    )


def test_a_study_starts_with_the_references_prunes_and_continues(tmp_path, capsys):
    path, root = _search(tmp_path), str(tmp_path / "runs")
    args = ["search", str(path), "--root", root, "--trials", "4", "--workers", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "best: trial" in out and "baseline: trial 0" in out and "sslight: trial 1" in out
    assert "orchestrate ui --optuna" in out

    study = _study(tmp_path)
    trials = study.trials
    assert len(trials) == 4
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert _same(trials[0].params, BASELINE) and trials[0].user_attrs["reference"] == "baseline"
    assert _same(trials[1].params, SSLIGHT) and trials[1].user_attrs["reference"] == "sslight"
    assert trials[2].params != trials[3].params  # two workers, one sampler seed: two points
    rows = _rows(tmp_path, study)
    for trial in trials:
        row = rows[trial.number]
        assert row.name == f"t{trial.number:03d}" and row.status == "finished"
        views = row.config["views"]
        assert views["policy"] == "custom"
        assert views["local_crops"]["number"] == trial.params["local_number"]
        s = trial.params["scale_boundary"]
        assert views["local_crops"]["scale"] == pytest.approx([0.05, s])
        assert views["global_crops"]["scale"] == pytest.approx([s, 1.0])
        assert max(trial.intermediate_values) >= 1  # k-NN went to the pruner each epoch
        if trial.state == TrialState.PRUNED:
            assert row.error.startswith("pruned at epoch")
        else:
            assert row.error is None and row.result["knn_top1"] == pytest.approx(trial.value)
    with root_registry(tmp_path) as registry:
        [grid] = [g for g in registry.grids() if g.name == "views"]
        assert grid.spec["kind"] == "search" and grid.spec["trials"] == 4

    # the same target again: nothing to run; a larger one: only the missing trial
    assert main([*args[:-4], "--trials", "4", "--executor", "debug"]) == 0
    assert len(_study(tmp_path).trials) == 4
    assert main([*args[:-4], "--trials", "5", "--executor", "debug"]) == 0
    again = _study(tmp_path).trials
    assert len(again) == 5 and again[4].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert [(t.params, t.state) for t in again[:4]] == [(t.params, t.state) for t in trials]
    assert sum("reference" in t.user_attrs for t in again) == 2


def test_a_pruned_trial_is_recorded_as_pruned_with_its_epoch(tmp_path, capsys):
    path = _search(
        tmp_path, pruner={"kind": "threshold", "lower": 101.0}, budget={"trials": 1, "epochs": 2}
    )
    assert main(["search", str(path), "--root", str(tmp_path / "runs"), "--executor", "debug"]) == 0
    trial, sslight = _study(tmp_path).trials  # a budget of one: SSLight's trial waits
    assert sslight.state == TrialState.WAITING
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [1]
    row = _rows(tmp_path, _study(tmp_path))[0]
    assert row.status == "finished" and row.error.startswith("pruned at epoch 1 (k-NN")
    with root_registry(tmp_path) as registry:
        assert [a.state for a in registry.attempts(row.key)] == ["pruned"]
    result = json.loads((Path(row.output_dir) / "result.json").read_text())
    assert "knn" not in result.get("stages", {})  # stopped after one of two epochs


def test_a_killed_worker_trial_is_retried_with_its_params_and_resumes(tmp_path, capsys):
    path = _search(tmp_path, budget={"trials": 2, "epochs": 4}, pruner="none")
    root = str(tmp_path / "runs")
    codes: list[int] = []
    runner = threading.Thread(
        target=lambda: codes.append(main(["search", str(path), "--root", root, "--workers", "2"]))
    )
    runner.start()
    checkpoint = tmp_path / "runs" / "views" / "trials" / "t000" / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), "trial 0 never checkpointed"
    with root_registry(tmp_path) as registry:
        [row] = [r for r in registry.runs(grid_name="views") if r.name == "t000"]
        controller = int(registry.attempts(row.key)[-1].job_id)
    for process in psutil.Process(controller).children(recursive=True):
        process.send_signal(signal.SIGKILL)  # the worker dies mid-trial without a word
    runner.join(timeout=300)
    assert codes == [0]

    study = _study(tmp_path)
    states = {t.number: t.state for t in study.trials}
    assert states == {0: TrialState.FAIL, 1: TrialState.COMPLETE, 2: TrialState.COMPLETE}
    killed, retry = study.trials[0], study.trials[2]
    assert retry.params == killed.params and retry.system_attrs["failed_trial"] == 0
    rows = _rows(tmp_path, study)
    assert rows[0].status == "cancelled" and "retried as trial 2" in rows[0].error
    assert rows[2].status == "finished" and rows[2].output_dir == rows[0].output_dir
    lines = (Path(rows[2].output_dir) / "metrics.jsonl").read_text().splitlines()
    epochs = [e["epoch"] for e in map(json.loads, lines) if e.get("type") == "epoch"]
    assert sorted(epochs) == [0, 1, 2, 3]  # resumed from the checkpoint, no epoch twice


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_database_storage_retries_a_trial_whose_heartbeat_stopped(tmp_path):
    from orchestrator.cli.search import register_search
    from orchestrator.search.space import suggest
    from orchestrator.search.spec import load_search
    from orchestrator.search.study import fail_stale, open_storage, open_study

    storage_url = f"sqlite:///{tmp_path / 'optuna.db'}"
    path = _search(tmp_path, storage=storage_url, heartbeat={"interval": 1, "grace": 2})
    search = load_search(path)
    with root_registry(tmp_path) as registry:
        register_search(registry, search)
        study = open_study(search, registry)
        trial = study.ask()  # the baseline point, then its worker goes silent
        suggest(trial, search.space)
        storage = open_storage(search)
        study_id = storage.get_study_id_from_name(search.name)
        storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, 0))
        time.sleep(3)
        fail_stale(study)
    trials = study.get_trials()
    assert trials[trial.number].state == TrialState.FAIL
    [retry] = [t for t in trials if t.system_attrs.get("failed_trial") == trial.number]
    assert retry.state == TrialState.WAITING and _same(retry.params, BASELINE)


@pytest.mark.parametrize(
    ("changes", "key", "says"),
    [
        ({"budgett": 1}, "budgett", "allowed keys"),
        (
            {"space": {**SPACE, "local_number": {"low": 2, "high": 4}}},
            "space.local_number",
            "baseline point 6",
        ),
        ({"sampler": "random"}, "sampler", "tpe, grid, cmaes"),
        ({"sampler": "grid"}, "space.scale_boundary", "finite set"),
        ({"pruner": {"kind": "median", "patience": 2}}, "pruner.patience", "n_startup_trials"),
        ({"heartbeat": {"interval": 1}}, "heartbeat", "database storages"),
        ({"objective": "loss"}, "objective", "knn_top1, linear_top1"),
        ({"base": {**_base(), "views": {"policy": "sslight"}}}, "base.views", "remove it"),
    ],
)
def test_bad_search_input_exits_2_with_one_message(tmp_path, capsys, changes, key, says):
    path = _search(tmp_path, **changes)
    assert main(["search", str(path), "--root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and f": {key}: " in err[0] and says in err[0]
    assert not (tmp_path / "runs" / "views" / "study.journal").exists()


def test_the_report_section_shows_best_vs_references_importances_and_history(tmp_path):
    from orchestrator.cli.search import register_search
    from orchestrator.search.report_section import search_section
    from orchestrator.search.spec import load_search
    from orchestrator.search.study import open_study

    search = load_search(_search(tmp_path))
    with root_registry(tmp_path) as registry:
        register_search(registry, search)
        study = open_study(search, registry)  # trials 0 and 1: the queued reference points
        distributions = {n: p.distribution() for n, p in search.space.items()}
        finished = [(BASELINE, 60.0, "baseline"), (SSLIGHT, 62.0, "sslight")]
        for i, s in enumerate((0.2, 0.25, 0.35, 0.45)):
            finished.append(
                ({**SSLIGHT, "scale_boundary": s, "local_number": 2 + i}, 60 + 10 * s, "")
            )
        for params, value, label in finished:  # trials 2..7, as workers would leave them
            attrs = {"reference": label} if label else {}
            study.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions=distributions, value=value, user_attrs=attrs
                )
            )
        [grid] = [g for g in registry.grids() if g.name == "views"]
        section = search_section(registry, grid, tmp_path / "report")
    assert section is not None and "best: trial 7, knn_top1 64.5" in section.markdown
    assert "baseline: trial 2, knn_top1 60.0; best is +4.5 points" in section.markdown
    assert "sslight: trial 3, knn_top1 62.0; best is +2.5 points" in section.markdown
    assert [p.name for p in section.images] == ["views-history.png", "views-importance.png"]
    assert all(p.stat().st_size > 0 for p in section.images)
    assert section.markdown.count("\n| ") == 2 + len(study.trials)  # header, rule, a row each


@pytest.mark.parametrize(
    ("sampler", "pruner", "kinds"),
    [
        ("tpe", "median", ("TPESampler", "MedianPruner")),
        ({"kind": "grid", "seed": 0}, "hyperband", ("GridSampler", "HyperbandPruner")),
        ({"kind": "cmaes", "seed": 0}, "none", ("CmaEsSampler", "NopPruner")),
    ],
)
def test_each_sampler_and_pruner_can_be_chosen(tmp_path, sampler, pruner, kinds):
    from orchestrator.search.spec import load_search

    finite = {
        **SPACE,
        "scale_boundary": {"choices": [0.14, 0.3]},
        "global_global": {"choices": [2 / 14, 0.4]},
    }
    search = load_search(_search(tmp_path, sampler=sampler, pruner=pruner, space=finite))
    made = (type(search.make_sampler()).__name__, type(search.make_pruner()).__name__)
    assert made == kinds
    assert search.references["baseline"]["global_global"] == 2 / 14
