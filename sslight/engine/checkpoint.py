"""Checkpoints per the run-directory contract: ``checkpoints/last.pt``, written atomically
through a temporary file of the writing process's own (``.last.pt.<host>.<pid>.<random>.tmp``).

Only plain tensors, numbers, strings, lists and dicts are stored, so every file loads with
``torch.load(..., weights_only=True)``. The previous good checkpoint is kept as ``prev.pt``: a
truncated or corrupt ``last.pt`` falls back to it with a warning instead of restarting from scratch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

LAST = "last.pt"
PREVIOUS = "prev.pt"
TMP_SUFFIX = ".tmp"


class CheckpointError(RuntimeError):
    """No usable checkpoint although one exists: resuming would silently lose training."""


def _temporary_prefix() -> str:
    """``.last.pt.<host>.<pid>.``: this process's temporary checkpoint files start so."""
    return f".{LAST}.{socket.gethostname()}.{os.getpid()}."


def _remove_orphans(directory: Path) -> None:
    """Delete the temporary files that processes of this host left when they died mid-write
    (a live writer's, or another host's, are left alone)."""
    host = f".{LAST}.{socket.gethostname()}."
    for path in directory.glob(f"{host}*{TMP_SUFFIX}"):
        pid = path.name[len(host) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def save_checkpoint(state: dict[str, Any], directory: Path) -> Path:
    """Write ``state`` to ``directory/last.pt`` via a temporary file and ``os.replace``.

    The temporary file's name is this process's own (host, pid and a random part): a requeued
    job and a straggler of the job it replaces, both saving into one run directory, never write
    into one file; each checkpoint still appears whole, by ``os.replace``."""
    directory.mkdir(parents=True, exist_ok=True)
    last = directory / LAST
    fd, name = tempfile.mkstemp(dir=directory, prefix=_temporary_prefix(), suffix=TMP_SUFFIX)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileNotFoundError):  # none yet, or another writer moved it
            os.replace(last, directory / PREVIOUS)
        os.replace(tmp, last)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _remove_orphans(directory)
    return last


def _read(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError("not a training checkpoint (no 'model' key)")
    return state


def load_checkpoint(directory: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint in ``directory``, or None when there is none at all."""
    candidates = [directory / LAST, directory / PREVIOUS]
    existing = [path for path in candidates if path.exists()]
    if not existing:
        return None
    problems = []
    for path in existing:
        try:
            state = _read(path)
        except Exception as err:  # corrupt files raise many types: pickle, zip, EOF, ...
            problems.append(f"{path}: {type(err).__name__}: {err}")
            log.warning("checkpoint %s is unreadable (%s); trying the previous one", path, err)
            continue
        return state
    raise CheckpointError(
        "no readable checkpoint; refusing to restart from scratch. "
        + "; ".join(problems)
        + ". Delete the checkpoints directory to start over."
    )


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
