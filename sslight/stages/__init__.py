"""The stages of ``sslight run``: what each is called (:mod:`sslight.stages.names`, a leaf the
config validates against) and what each runs (:mod:`sslight.stages.registry`, one explicit
registration line per stage). See docs/architecture.md, "Adding a stage"."""
