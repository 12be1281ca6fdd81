"""SSLight lab's dashboards: the report of grids (tables, plots, sections) and the web UI
launchers; they read the registry (``db``) only."""
