"""``orchestrate search FILE``: an Optuna study over the view policy, run by submitit workers.

    orchestrate search FILE [--trials N] [--workers N] [--executor local|slurm|debug]
                            [--workdir DIR] [key=value ...]

The study (search file format: ``orchestrator/search/spec.py``) is the registry grid of the same
name (spec ``{"kind": "search", ...}``); each trial is one of its runs. Its first two trials are the
baseline and SSLight points. Running the command again continues the study: ``--trials`` (or
``budget.trials``) is the total number of trials the study should have, not a number to add, so
an interrupted search finishes what is left and a finished one only prints its summary.

The command submits ``--workers`` jobs and waits for them; when workers died it reconciles
(their trials are queued again) and starts another round, at most ``MAX_ROUNDS`` times. SLURM
workers go out as one array and need a database storage every node reaches (``storage:
postgresql://...``; anything else is exit 2, orchestrator/search/executor_storage.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.cli.common import add_file_and_overrides, open_registry_for
from orchestrator.execution.executors import EXECUTORS, local_parallelism, make_executor
from sslight import ConfigError, ExitCode

if TYPE_CHECKING:  # the rest loads when the command runs: `orchestrate --help` stays fast
    from db import Registry
    from orchestrator.search.spec import Search

log = logging.getLogger(__name__)

MAX_ROUNDS = 3


def add_command(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "search", parents=[common], help="Optuna search over the view policy"
    )
    add_file_and_overrides(
        parser,
        "search YAML (format: orchestrator/search/spec.py)",
        "dotted overrides of the base run config, e.g. train.epochs=1",
    )
    parser.add_argument("--trials", type=int, help="trials the study should have in total")
    parser.add_argument("--workers", type=int, help="trials at once (jobs sharing the study)")
    parser.add_argument("--executor", choices=EXECUTORS, default="local")
    parser.add_argument("--workdir", help="where trials and the journal live (a new study)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.grid.preflight import check_paths
    from orchestrator.search.executor_storage import check_storage
    from orchestrator.search.spec import load_search
    from orchestrator.search.study import exhausted, open_study
    from orchestrator.search.summary import summary_lines

    search = load_search(args.file, args.overrides, workdir=args.workdir, trials=args.trials)
    check_storage(search, args.executor)
    workers = args.workers or search.workers
    if workers is not None and workers < 1:
        raise ConfigError("command line", "--workers", f"must be at least 1, got {workers}")
    workers = workers or (local_parallelism() if args.executor == "local" else 1)
    references = search.references.items()
    check_paths(search.source, [(f"{n} trial", search.trial_config(p, "")) for n, p in references])
    started = time.time()
    with open_registry_for(args) as registry:
        if search.storage == registry.url:
            raise ConfigError(search.source, "storage", "must not be the registry's database")
        grid_id = register_search(registry, search)
        study = open_study(search, registry)
        for _ in range(MAX_ROUNDS):
            counts = _reconciled(registry, search, study)
            todo = search.trials - counts.counted
            if todo <= 0 or (exhausted(study) and not counts.waiting):
                break
            done_before = counts.complete + counts.pruned + counts.failed
            count = min(workers, todo)
            tracking = _tracking(args, registry, search)
            _run_workers(registry, search, grid_id, args.executor, count, tracking)
            after = _reconciled(registry, search, study)
            if after.complete + after.pruned + after.failed == done_before:
                log.error("search %s: a round of workers finished no trial", search.name)
                break
        counts = _reconciled(registry, search, study)
        print("\n".join(summary_lines(search, study)))
        print(f"search {search.name}: {time.time() - started:.0f} s in this invocation")
        reached = counts.counted >= search.trials or exhausted(study)
        clean = reached and not counts.failed and not counts.running
        return ExitCode.OK if clean else ExitCode.FAILURE


def register_search(registry: Registry, search: Search) -> int:
    """Record the search as the registry grid of its name; return the grid id."""
    existing = next((g for g in registry.grids() if g.name == search.name), None)
    if existing is not None and existing.spec.get("kind") != "search":
        raise ConfigError(
            search.source,
            "name",
            f"{search.name!r} is a grid in the registry; name the search differently",
        )
    return registry.upsert_grid(search.name, search.source, search.workdir, search.to_spec())


def _reconciled(registry: Registry, search: Search, study: Any) -> Any:
    """The study's tally once dead workers' trials are queued again: those whose job ended
    (reconcile) and, in a database, those whose heartbeat stopped."""
    from orchestrator.execution.reconcile import reconcile
    from orchestrator.search.recovery import sync_rows
    from orchestrator.search.study import fail_stale, study_lock, tally

    reconcile(registry, search.name)
    if search.uses_database:
        with study_lock(registry, search.name):
            fail_stale(study)
    sync_rows(registry, search, study)
    return tally(study)


def _tracking(args: argparse.Namespace, registry: Registry, search: Search) -> str:
    """Where the trials' MLflow runs go: ``--tracking-uri``, else beside the registry."""
    from orchestrator.tracking.tracker import registry_tracking_uri, resolve_tracking_uri

    if getattr(args, "tracking_uri", None):
        return resolve_tracking_uri(args.tracking_uri, args.root)
    return registry_tracking_uri(registry.url, search.workdir)


def _run_workers(
    registry: Registry, search: Search, grid_id: int, kind: str, count: int, tracking_uri: str
) -> None:
    """Start ``count`` workers and wait until every one has ended."""
    from orchestrator.search.worker import SearchWorker

    executor = make_executor(kind, Path(search.workdir) / "jobs", search.resources)
    threads = None  # debug: the threads of this process
    if kind == "local":
        threads = max(1, (os.cpu_count() or 1) // count)
    elif kind == "slurm":  # torch would take every core of the node, not the job's share
        threads = search.resources.cpus_per_task
    workers = [
        SearchWorker(search.to_spec(), grid_id, registry.url, kind, threads, tracking_uri)
        for _ in range(count)
    ]
    if kind == "slurm":
        with executor.batch():
            jobs = [executor.submit(worker) for worker in workers]
    else:
        jobs = [executor.submit(worker) for worker in workers]
    log.info("search %s: %d %s workers started", search.name, count, kind)
    for job in jobs:
        if kind != "debug":
            while not job.done():
                time.sleep(1.0)
        try:
            job.result()
        except Exception as err:  # a dead worker: reconcile queues its trial again
            log.error("search %s: worker %s ended: %s", search.name, job.job_id, err)
