"""Guards the registry's operations share: the error they raise, keys in IN (...) clauses of
bounded size, and values checked against their allowed set before they reach a CHECK constraint."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

CHUNK = 500  # keys per IN (...) clause


class RegistryError(Exception):
    """A registry that cannot be used as asked (bad URL, newer schema, unknown run, ...)."""


def chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    """``items`` in slices of at most ``CHUNK``."""
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def check_choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    """Raise ValueError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")
