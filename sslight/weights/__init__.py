"""Pretrained weights in and out.

- out: :func:`~sslight.weights.export.export_run` writes a run's evaluated backbone as a plain
  torchvision / timm state dict plus a JSON sidecar (``sslight export``; the pipeline does it after
  pretraining into ``<output_dir>/export/``);
- in: :func:`~sslight.weights.init_weights.load_init_weights` reads an export, one of our runs or
  a checkpoint released with the seed repo for ``init.weights``, through a restricted unpickler
  (:mod:`sslight.weights.safe_unpickle`) that never runs code pickled in a file.
"""
