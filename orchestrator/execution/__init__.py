"""Running cells: executors (local, SLURM, debug), the submitted job (``job.CellJob``), submission,
reconciliation of dead jobs and the status table."""
