"""``sslight --help`` and ``orchestrate --help`` (and each sub-command's) read as plain text
(no reStructuredText markup from the docstrings)."""

from __future__ import annotations

import pytest

from sslight.cli import main


def test_help_prints_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "sslight: run one config without the orchestrator." in text
    assert "``" not in text


ORCHESTRATE_COMMANDS = (
    "grid",
    "status",
    "resume",
    "cancel",
    "report",
    "sync",
    "ui",
    "search",
    "export",
)


@pytest.mark.parametrize("argv", [[], *([command] for command in ORCHESTRATE_COMMANDS)])
def test_orchestrate_help_prints_plain_text(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.cli import main as orchestrate

    with pytest.raises(SystemExit) as exit_info:
        orchestrate([*argv, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: orchestrate" in text
    assert "``" not in text
