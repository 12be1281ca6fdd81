"""MLflow tracking of cells: the tracker, its store, the records it sends and the sync cursor."""
