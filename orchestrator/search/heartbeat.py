"""A trial's heartbeat in a database storage, so that another worker can tell a dead trial from a
slow one (``heartbeat: {interval, grace}`` of the search file; journal files record none)."""

from __future__ import annotations

import threading
from typing import Any


class Heartbeat:
    """Records a trial's heartbeat in a database storage every ``interval`` seconds."""

    def __init__(self, storage: Any, trial_id: int, interval: int) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, args=(storage, trial_id, interval), daemon=True
        )

    def _beat(self, storage: Any, trial_id: int, interval: int) -> None:
        while True:
            storage.record_heartbeat(trial_id)
            if self._stop.wait(interval):
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
