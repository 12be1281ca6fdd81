"""The ``orchestrate`` command line: ``main`` parses (``orchestrator/cli/main.py``), one module per
sub-command runs it, ``common`` holds what they share."""

from __future__ import annotations

from orchestrator.cli.main import main

__all__ = ["main"]
