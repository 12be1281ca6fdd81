"""``sslight --help`` reads as plain text (no reStructuredText markup from the docstring)."""

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
