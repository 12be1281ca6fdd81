"""How much of a run directory MLflow already has: ``<output_dir>/.mlflow_sync.json``.

metrics.jsonl is the source of truth; the cursor makes sending it incremental and idempotent.
It holds the byte offset of the lines sent and a digest of the last one. When training resumes
from a checkpoint, metrics.jsonl is rewound (lines after the checkpoint dropped, then written
again); the digest no longer matches, and lines are then chosen by step instead: those past the
highest step sent (and, at that step, past the lines already sent). A batch that failed is resent
with the same timestamp, so a batch MLflow did store before the failure is deduplicated there.
Only one process syncs a run directory at a time (``flock`` on ``.mlflow_sync.lock``).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CURSOR_FILE = ".mlflow_sync.json"
LOCK_FILE = ".mlflow_sync.lock"


def _digest(line: bytes) -> str:
    return hashlib.sha1(line).hexdigest()


@dataclass
class SyncCursor:
    tracking_uri: str = ""
    run_id: str = ""
    params: bool = False  # config params and tags logged
    offset: int = 0  # bytes of metrics.jsonl sent (whole lines)
    last_line: str = ""  # digest of the last line sent, newline included
    last_line_bytes: int = 0
    max_step: int = -1  # highest step sent ...
    at_max: int = 0  # ... and how many lines of that step
    pending_timestamp: int | None = None  # ms, of a batch not yet confirmed
    result: dict[str, float] = field(default_factory=dict)  # result.json metrics as sent
    tags: dict[str, str] = field(default_factory=dict)  # result tags as sent
    artifacts: dict[str, list[int]] = field(default_factory=dict)  # path: [size, mtime_ns]

    @classmethod
    def load(cls, run_dir: Path, tracking_uri: str, run_id: str) -> SyncCursor:
        """The cursor of ``run_dir`` for this store and run; a fresh one if it was for another."""
        try:
            data = json.loads((Path(run_dir) / CURSOR_FILE).read_text())
            known = {f.name for f in dataclasses.fields(cls)}
            cursor = cls(**{k: v for k, v in data.items() if k in known})
        except (OSError, ValueError, TypeError):
            cursor = cls()
        if (cursor.tracking_uri, cursor.run_id) != (tracking_uri, run_id):
            cursor = cls(tracking_uri=tracking_uri, run_id=run_id)
        return cursor

    def save(self, run_dir: Path) -> None:
        path = Path(run_dir) / CURSOR_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=1) + "\n")
        os.replace(tmp, path)


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Exclusive right to sync ``run_dir`` (the job and ``orchestrate sync`` may race)."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(run_dir) / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Pending:
    """metrics.jsonl lines not yet sent, and the cursor position once they are."""

    records: list[dict[str, Any]]
    offset: int
    last_line: str
    last_line_bytes: int
    max_step: int
    at_max: int


def _complete_lines(data: bytes) -> list[bytes]:
    """Whole lines only (a line still being written has no newline yet)."""
    lines = data.split(b"\n")
    return [line + b"\n" for line in lines[:-1]]


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _continues(handle: Any, cursor: SyncCursor) -> bool:
    """Whether the file still holds, just before ``cursor.offset``, the last line sent."""
    if cursor.offset == 0:
        return True
    start = cursor.offset - cursor.last_line_bytes
    if start < 0:
        return False
    handle.seek(start)
    return _digest(handle.read(cursor.last_line_bytes)) == cursor.last_line


def pending_lines(path: Path, cursor: SyncCursor) -> Pending:
    """The lines of metrics.jsonl at ``path`` that ``cursor`` has not sent."""
    if not path.exists():
        return Pending([], 0, "", 0, cursor.max_step, cursor.at_max)
    with open(path, "rb") as handle:
        rewound = not _continues(handle, cursor)
        start = 0 if rewound else cursor.offset
        handle.seek(start)
        lines = _complete_lines(handle.read())
    offset = start + sum(len(line) for line in lines)
    last = lines[-1] if lines else b""
    if not lines and not rewound:
        return Pending(
            [],
            cursor.offset,
            cursor.last_line,
            cursor.last_line_bytes,
            cursor.max_step,
            cursor.at_max,
        )
    max_step, at_max, step = cursor.max_step, cursor.at_max, 0
    seen_at_old_max, records = 0, []
    for line in lines:
        record = _parse(line)
        if record is None:
            continue
        step = int(record.get("step", step))
        if rewound and step < cursor.max_step:
            continue  # sent before the rewind
        if rewound and step == cursor.max_step:
            seen_at_old_max += 1
            if seen_at_old_max <= cursor.at_max:
                continue
        records.append(record)
        if step > max_step:
            max_step, at_max = step, 1
        elif step == max_step:
            at_max += 1
    return Pending(records, offset, _digest(last), len(last), max_step, at_max)


def advance(cursor: SyncCursor, sent: Pending) -> None:
    """Move ``cursor`` past the lines of ``sent`` (call once MLflow has them)."""
    cursor.offset, cursor.last_line = sent.offset, sent.last_line
    cursor.last_line_bytes = sent.last_line_bytes
    cursor.max_step, cursor.at_max = sent.max_step, sent.at_max
    cursor.pending_timestamp = None
