"""Alembic migrations of the registry (run by ``db.session.open_registry``)."""
