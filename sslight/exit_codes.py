"""The exit codes of the ``sslight`` and ``orchestrate`` commands, in one place.

0 success, 1 failure, 2 bad input (one message naming the file, key and problem), 130 interrupted
(Ctrl-C; rerunning the same command resumes).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a command's exit status means; an ``int``, so ``sys.exit`` and ``==`` take it."""

    OK = 0
    FAILURE = 1
    BAD_INPUT = 2
    INTERRUPTED = 130
