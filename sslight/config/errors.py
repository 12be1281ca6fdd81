"""``ConfigError``: bad user input, located. A leaf, so any module may raise it without importing
the config loader (and, through it, the schema and the method registry)."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input: ``source: key: problem``. CLIs print it and exit 2."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")
