"""Optuna searches over the view policy: the search file (``spec``), its space, the study, the
workers that run trials, recovery of dead ones, the summary and the report section."""
