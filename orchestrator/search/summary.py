"""How far a study got: its trials table and the best trial against the baseline and SSLight."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from orchestrator.execution.status import align
from orchestrator.search.space import PARAMETERS
from orchestrator.search.spec import Search
from orchestrator.search.study import ERROR, REFERENCE, display_storage, retry_of, tally


@dataclass(frozen=True)
class Standing:
    """The best trial and the reference trials (None until they completed)."""

    best: FrozenTrial | None
    references: dict[str, FrozenTrial | None]


def _reference_trials(trials: list[FrozenTrial]) -> dict[str, FrozenTrial | None]:
    """Each reference point's completed trial (a retried reference keeps its label)."""
    out: dict[str, FrozenTrial | None] = {"baseline": None, "sslight": None}
    for trial in trials:
        label = trial.user_attrs.get(REFERENCE)
        if label in out and trial.state == TrialState.COMPLETE:
            out[label] = out[label] or trial
    return out


def standing(study: optuna.Study) -> Standing:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    return Standing(best, _reference_trials(trials))


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _param(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def trial_note(study: optuna.Study, trial: FrozenTrial) -> str:
    if trial.state == TrialState.FAIL:
        if ERROR in trial.user_attrs:
            return trial.user_attrs[ERROR]
        retry = retry_of(study, trial.number)
        return f"worker died; retried as trial {retry}" if retry is not None else "worker died"
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        return f"pruned at epoch {max(trial.intermediate_values)}"
    if "failed_trial" in trial.system_attrs:
        return f"retry of trial {trial.system_attrs['failed_trial']}"
    return ""


def trials_rows(study: optuna.Study, objective: str) -> list[list[str]]:
    """One row per trial: number, state, value, the four parameters, reference label, note."""
    header = ["trial", "state", objective, *PARAMETERS, "reference", "note"]
    rows = [header]
    for trial in study.get_trials(deepcopy=False):
        rows.append(
            [
                str(trial.number),
                trial.state.name.lower(),
                _value(trial.value),
                *(_param(trial.params[p]) if p in trial.params else "-" for p in PARAMETERS),
                trial.user_attrs.get(REFERENCE, ""),
                trial_note(study, trial),
            ]
        )
    return rows


def _params(trial: FrozenTrial) -> str:
    return ", ".join(f"{name}={_param(value)}" for name, value in trial.params.items())


def summary_lines(search: Search, study: optuna.Study) -> list[str]:
    """The trials table, then best vs baseline vs SSLight and where to look further."""
    counts = tally(study)
    lines = [*align(trials_rows(study, search.objective)), ""]
    lines.append(
        f"study {search.name}: {counts.counted} of {search.trials} trials "
        f"({counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed, "
        f"{counts.running} running, {counts.waiting} waiting, {counts.retried} retried)"
    )
    now = standing(study)
    if now.best is None:
        lines.append(f"no trial has completed yet; objective {search.objective} (maximised)")
    else:
        lines.append(
            f"best: trial {now.best.number}, {search.objective} {now.best.value:.1f} "
            f"({_params(now.best)})"
        )
        for label, trial in now.references.items():
            if trial is None:
                lines.append(f"{label}: not completed yet")
            else:
                gain = now.best.value - trial.value
                lines.append(
                    f"{label}: trial {trial.number}, {search.objective} {trial.value:.1f}; "
                    f"best is {gain:+.1f} points"
                )
    lines.append(f"study dashboard: orchestrate ui --optuna {display_storage(search)}")
    return lines
