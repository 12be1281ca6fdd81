"""SSLight lab's orchestrator: grids and searches of runs on an executor, recorded in the registry.

``cli`` (the ``orchestrate`` command), ``grid`` (grid files to cells), ``execution`` (executors,
jobs, submission, reconciliation), ``tracking`` (MLflow), ``search`` (Optuna studies). It uses the
ML library through its public API only (``from sslight import ...``); see docs/architecture.md.
"""
