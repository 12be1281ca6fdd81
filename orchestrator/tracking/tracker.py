"""MLflow tracking of grid cells: one experiment per grid, one run per cell, kept up to date.

A cell's MLflow run carries the tags ``method``, ``backbone``, ``view_policy``, ``grid``,
``cell_key``, ``pretrain_key`` (and any extra tags, e.g. a search trial), the resolved config as
dotted params,
every numeric key of ``metrics.jsonl`` at its line's step, the numeric results of
``result.json``, system metrics while the cell runs, and ``config.yaml``, ``result.json``,
``export/`` and ``report/*.png`` as artifacts. Its id lives in the registry
(``runs.mlflow_run_id``), so a resumed or requeued cell continues the same run. A shared
pretraining is a run of its own; each cell that evaluates it is its child (MLflow's
``mlflow.parentRunId``), and every evaluation job of one cell logs to the cell's run.

Tracking never stops training: each call catches its own failures (a dead server, a locked
database); the run directory stays the source of truth and the next ``sync()`` - or
``orchestrate sync`` - sends what is missing (see ``orchestrator.tracking.cursor``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from db import RunStatus
from orchestrator.tracking.cursor import SyncCursor, advance, pending_lines, run_dir_lock
from orchestrator.tracking.records import (
    cell_tags,
    config_params,
    line_metrics,
    result_metrics,
    result_tags,
)
from orchestrator.tracking.store import (
    TrackingStore,
    default_tracking_uri,
    is_server_uri,
    registry_tracking_uri,
    resolve_tracking_uri,
)
from sslight import RunDir

__all__ = [
    "MLFLOW_STATUS",
    "CellJobsTracker",
    "CellTracker",
    "NoTracker",
    "default_tracking_uri",
    "is_server_uri",
    "registry_tracking_uri",
    "resolve_tracking_uri",
]

log = logging.getLogger(__name__)

# Registry status -> the MLflow run status `orchestrate sync` leaves; others stay RUNNING.
MLFLOW_STATUS = {
    RunStatus.FINISHED: "FINISHED",
    RunStatus.FAILED: "FAILED",
    RunStatus.CANCELLED: "KILLED",
}
REPORT_PNGS = "*.png"  # under the run's report/
BACKOFF_MIN_S, BACKOFF_MAX_S = 30.0, 900.0
PARENT_TAG = "mlflow.parentRunId"  # MLflow's parent/child runs: a cell under its pretraining


def _artifact_files(run_dir: Path, everything: bool) -> list[Path]:
    """The run's config; with ``everything`` also its result, export and report PNGs."""
    paths = RunDir(run_dir)
    files = [paths.config, paths.result] if everything else [paths.config]
    if everything:
        files.extend(p for p in sorted(paths.export.rglob("*")) if p.is_file())
        files.extend(sorted(paths.report.glob(REPORT_PNGS)))
    return [p for p in files if p.is_file()]


class CellTracker:
    """Mirror one registry cell (``key``) into an MLflow run at ``tracking_uri``.

    ``start()`` before the pipeline, ``sync()`` after each epoch and stage, ``finish(status)``
    at the end (FINISHED, FAILED, KILLED; "RUNNING" sends everything but leaves the run open,
    for a preempted job that will be requeued). None of them raises.
    """

    def __init__(
        self,
        registry: Any,
        key: str,
        tracking_uri: str,
        extra_tags: dict[str, str] | None = None,
        experiment: str | None = None,
    ) -> None:
        self.registry = registry
        self.key = key
        self.tracking_uri = tracking_uri
        self.extra_tags = dict(extra_tags or {})
        self.experiment = experiment
        self.store = TrackingStore(tracking_uri)
        self.run_id: str | None = None
        self.status: str | None = None  # the MLflow run's status as last seen
        self._monitor: Any = None
        self.last_error: str | None = None
        self._backoff_s = 0.0
        self._quiet_until = 0.0  # time.monotonic() before which sync() does not try

    # -- public API: never raises --------------------------------------------------------

    def start(self) -> None:
        """Get or create the cell's MLflow run, mark it RUNNING, log tags, params and system
        metrics; never raises."""
        if self._guard("start", self._ensure_run, True):
            self._guard("start system metrics", self._start_monitor)
            self.sync()

    def sync(self, artifacts: bool = False, force: bool = False) -> bool:
        """Send the metrics.jsonl lines and result.json values MLflow does not have yet (and,
        with ``artifacts``, every artifact); return whether it worked. Never raises. After a
        failure, calls within a growing back-off (30 s .. 15 min) return False at once unless
        ``force``: a server that hangs costs its timeout now and then, not every epoch."""
        if not force and time.monotonic() < self._quiet_until:
            return False
        return self._guard("sync", self._sync, artifacts)

    def finish(self, status: str) -> bool:
        """Final sync with artifacts, stop system metrics and end the run with ``status``
        ("RUNNING" leaves it open); return whether it worked. Never raises."""
        self._stop_monitor()
        if not self.sync(artifacts=True, force=True):
            return False
        if status == "RUNNING" or status == self.status:
            return True
        return self._guard("finish", self._terminate, status)

    # -- internals -----------------------------------------------------------------------

    def _guard(self, what: str, fn: Any, *args: Any) -> bool:
        try:
            fn(*args)
        except Exception as err:  # tracking must never stop training
            short = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
            first = self.last_error is None  # warn once per outage, not every epoch
            self._backoff_s = min(max(2 * self._backoff_s, BACKOFF_MIN_S), BACKOFF_MAX_S)
            self._quiet_until = time.monotonic() + self._backoff_s
            self.last_error = f"{type(err).__name__}: {short}"
            log.log(
                logging.WARNING if first else logging.DEBUG,
                "mlflow %s for cell %s at %s failed (%s); metrics stay in metrics.jsonl "
                "and `orchestrate sync` sends them later",
                what,
                self.key,
                self.tracking_uri,
                self.last_error,
            )
            return False
        if self.last_error is not None:
            log.info("mlflow %s for cell %s at %s works again", what, self.key, self.tracking_uri)
        self.last_error, self._backoff_s, self._quiet_until = None, 0.0, 0.0
        return True

    def _cell(self) -> Any:
        run = self.registry.run(self.key)
        if run is None:
            raise KeyError(f"no run with key {self.key!r} in the registry")
        return run

    def _ensure_run(self, reopen: bool = False) -> None:
        """Find the cell's MLflow run (creating it if this store has none); ``reopen`` marks a
        finished one RUNNING again (a resumed cell)."""
        if self.run_id is not None and not reopen:
            return
        client = self.store.client
        run_dir = Path(self._cell().output_dir)
        with run_dir_lock(run_dir):  # a cell's evaluation jobs may start together
            cell = self._cell()
            run = self.store.get_run(cell.mlflow_run_id) if cell.mlflow_run_id else None
            if run is None:
                run = self._create_run(cell)
        self.run_id, self.status = run.info.run_id, run.info.status
        if reopen and self.status != "RUNNING":
            self.store.call(client.update_run, self.run_id, status="RUNNING")
            self.status = "RUNNING"
        with run_dir_lock(run_dir):
            cursor = SyncCursor.load(run_dir, self.tracking_uri, self.run_id)
            if not cursor.params:
                self._log_batch(params=config_params(cell.config))
                cursor.params = True
            self._log_batch(tags=cell_tags(cell, self.extra_tags))
            cursor.save(run_dir)

    def _create_run(self, cell: Any) -> Any:
        """A new MLflow run for ``cell``: a child of its shared pretraining's run, if any."""
        tags = cell_tags(cell)
        upstream = self.registry.run(cell.depends_on) if cell.depends_on else None
        if upstream is not None and upstream.mlflow_run_id:
            tags[PARENT_TAG] = upstream.mlflow_run_id
        experiment_id = self.store.experiment_id(self.experiment or cell.grid)
        run = self.store.call(
            self.store.client.create_run, experiment_id, tags=tags, run_name=cell.name
        )
        self.registry.set_mlflow_run_id(self.key, run.info.run_id)
        log.info("cell %s: MLflow run %s at %s", cell.name, run.info.run_id, self.tracking_uri)
        return run

    def _log_batch(self, metrics: list | None = None, params: dict | None = None, tags=None):
        from mlflow.entities import Param, RunTag

        self.store.call(
            self.store.client.log_batch,
            self.run_id,
            metrics=metrics or [],
            params=[Param(k, v) for k, v in (params or {}).items()],
            tags=[RunTag(k, v) for k, v in (tags or {}).items()],
        )

    def _sync(self, artifacts: bool) -> None:
        self._ensure_run()
        run_dir = Path(self._cell().output_dir)
        with run_dir_lock(run_dir):
            cursor = SyncCursor.load(run_dir, self.tracking_uri, self.run_id)
            self._send_lines(run_dir, cursor)
            self._send_result(run_dir, cursor)
            self._send_artifacts(run_dir, cursor, everything=artifacts)

    def _send_lines(self, run_dir: Path, cursor: SyncCursor) -> None:
        from mlflow.entities import Metric

        pending = pending_lines(RunDir(run_dir).metrics, cursor)
        if pending.records:
            if cursor.pending_timestamp is None:  # fixed before sending: a resend deduplicates
                cursor.pending_timestamp = int(time.time() * 1000)
                cursor.save(run_dir)
            stamp = cursor.pending_timestamp
            metrics = [
                Metric(name, value, stamp, step)
                for record in pending.records
                for name, value, step in line_metrics(record)
            ]
            self._log_batch(metrics=metrics)
        advance(cursor, pending)
        cursor.save(run_dir)

    def _send_result(self, run_dir: Path, cursor: SyncCursor) -> None:
        from mlflow.entities import Metric

        path = RunDir(run_dir).result
        if not path.exists():
            return
        try:
            result = json.loads(path.read_text())
        except ValueError:
            return  # replaced atomically, so only a foreign writer gets here; next sync
        values = result_metrics(result)
        changed = {k: v for k, v in values.items() if cursor.result.get(k) != v}
        tags = {k: v for k, v in result_tags(result).items() if cursor.tags.get(k) != v}
        if changed or tags:
            # at the last training step, so a stage's knn_top1 outranks the monitor's of epochs
            step, stamp = max(cursor.max_step, 0), int(time.time() * 1000)
            metrics = [Metric(k, v, stamp, step) for k, v in changed.items()]
            self._log_batch(metrics=metrics, tags=tags)
            cursor.result.update(changed)
            cursor.tags.update(tags)
            cursor.save(run_dir)

    def _send_artifacts(self, run_dir: Path, cursor: SyncCursor, everything: bool) -> None:
        client = self.store.client
        for path in _artifact_files(run_dir, everything):
            stat = path.stat()
            relative = path.relative_to(run_dir)
            name, folder = str(relative), str(relative.parent)
            if cursor.artifacts.get(name) == [stat.st_size, stat.st_mtime_ns]:
                continue
            artifact_path = None if folder == "." else folder
            self.store.call(client.log_artifact, self.run_id, str(path), artifact_path)
            cursor.artifacts[name] = [stat.st_size, stat.st_mtime_ns]
            cursor.save(run_dir)

    def _terminate(self, status: str) -> None:
        self._ensure_run()
        self.store.call(self.store.client.set_terminated, self.run_id, status)
        self.status = status

    def _start_monitor(self) -> None:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._monitor = SystemMetricsMonitor(
            self.run_id, resume_logging=True, tracking_uri=self.tracking_uri
        )
        self._monitor.start()

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            monitor, self._monitor = self._monitor, None
            try:
                monitor.finish()
            except Exception as err:  # its last samples are lost, nothing else
                log.debug("stopping system metrics of cell %s: %s", self.key, err)


class CellJobsTracker:
    """The tracker of one of a cell's evaluation jobs, which share the cell's MLflow run: the
    run ends only with the last of them, FAILED if any failed, else with ``finish``'s status."""

    def __init__(self, tracker: CellTracker, registry: Any, cell_key: str, job_key: str) -> None:
        self.tracker, self.registry = tracker, registry
        self.cell_key, self.job_key = cell_key, job_key

    def start(self) -> None:
        self.tracker.start()

    def sync(self, artifacts: bool = False, force: bool = False) -> bool:
        return self.tracker.sync(artifacts, force)

    def finish(self, status: str) -> bool:
        others = [j for j in self.registry.cell_jobs(self.cell_key) if j.key != self.job_key]
        if status in ("FINISHED", "FAILED") and others:
            states = {str(j.status) for j in others}
            if states & {"pending", "submitted", "running"}:
                status = "RUNNING"  # the others finish the run
            elif status == "FINISHED" and states & {"failed", "lost"}:
                status = "FAILED"
        return self.tracker.finish(status)


class NoTracker:
    """The tracker of a cell submitted without a tracking URI: does nothing."""

    def start(self) -> None:
        pass

    def sync(self, artifacts: bool = False, force: bool = False) -> bool:
        return True

    def finish(self, status: str) -> bool:
        return True
