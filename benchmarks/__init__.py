"""Benchmarks of the training step, augmentation, FLOP efficiency and orchestration, side by side
with the ``lightly`` library where it has the same piece. Run them with ``make bench`` or
``python -m benchmarks.run [--quick] [--only NAME] [--out DIR]``."""
