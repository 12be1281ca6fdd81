"""Semi-supervised evaluation: fine-tune the whole network on a fraction of the labels.

SSLight seed repo: 1 % of ImageNet for 60 epochs or 10 % for 30, batch 1024, SGD Nesterov, lr
0.03 × batch/256, wd 0, cosine to 1e-6 set once per epoch, the seed's 3-layer MLP head started
from the pretrained projection head (sslight/evaluation/semi_head.py). The labelled images come
from the fixed ImageNet split files (``1percent.txt``, ``10percent.txt``, one file name per line,
as released with SimCLR) or the seed's own ``semi_<p>percent.txt`` (``index,label,wnid,file``
per line: the index counts images in its HDF5 packing of ImageNet, so the class folder and file
name are what is matched, never the index). Without a split
directory the labelled subset is class-stratified and seeded with the run's seed, taken from the
images the run pretrained on (``data.train_subset``). In a distributed run each rank fine-tunes
on its share of every global batch (``eval.semi.batch_size``) with the batch norm computed over
the global batch (SyncBatchNorm, as the seed; ``CpuSyncBatchNorm`` on CPUs), and
rank 0 writes the files.
"""

from __future__ import annotations

import copy
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslight.data.sources import FileImageSource, ImageSource
from sslight.data.subset import stratified_subset
from sslight.engine.distributed import current_env
from sslight.engine.optim import parameter_groups
from sslight.engine.rundir import RunDir
from sslight.evaluation.classifier import (
    Classifier,
    amp_dtype_for,
    augmented_batches,
    completed_result,
    eval_batches,
    fit_classifier,
    load_labelled_data,
)
from sslight.evaluation.data_parallel import per_rank_batch, shard, sync_batch_norm
from sslight.evaluation.semi_head import semi_head
from sslight.stages.names import percent_tag, semi_stage_name


def _file_keys(source: FileImageSource) -> list[str]:
    """How each image is named in split files: its file name, or ``<class dir>/<file name>``
    where file names repeat across classes."""
    names = [path.name for path in source.files]
    repeated = {name for name, count in Counter(names).items() if count > 1}
    return [
        f"{path.parent.name}/{path.name}" if path.name in repeated else path.name
        for path in source.files
    ]


def read_split_file(path: Path, source: ImageSource) -> torch.Tensor:
    """Sorted source indices of the images listed in ``path`` (blank lines and ``#`` skipped).

    File sources: one image per line, by file name or by a path ending in ``<class>/<name>``
    (ImageNet split files list names such as ``n01440764_10026.JPEG``), or a seed line
    ``index,label,<class>,<name>``. In-memory sources: one integer index per line.
    """
    lines = [
        (number, line.strip())
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#")
    ]
    if not lines:
        raise ValueError(f"{path}: the split file lists no image")
    chosen: list[int] = []
    if isinstance(source, FileImageSource):
        keys = {key: i for i, key in enumerate(_file_keys(source))}
        missing = []
        for number, entry in lines:
            fields = entry.split(",")
            if len(fields) == 4:  # the seed's index,label,wnid,file: match <wnid>/<file>
                entry = f"{fields[2].strip()}/{fields[3].strip()}"
            parts = Path(entry).parts
            found = keys.get(parts[-1])
            if found is None and len(parts) > 1:
                found = keys.get(f"{parts[-2]}/{parts[-1]}")
            if found is None:
                missing.append(f"line {number}: {entry}")
            else:
                chosen.append(found)
        if missing:
            raise ValueError(
                f"{path}: {len(missing)} of {len(lines)} entries match no training image "
                f"({len(source)} images, named by file name, or <class>/<file name> where "
                f"names repeat), e.g. {'; '.join(missing[:3])}"
            )
    else:
        for number, entry in lines:
            try:
                index = int(entry)
            except ValueError:
                raise ValueError(
                    f"{path}: line {number}: expected an integer image index for this in-memory "
                    f"dataset, got {entry!r}"
                ) from None
            if not 0 <= index < len(source):
                raise ValueError(
                    f"{path}: line {number}: index {index} out of range [0, {len(source)})"
                )
            chosen.append(index)
    return torch.unique(torch.tensor(chosen, dtype=torch.int64))


def labelled_subset(
    source: ImageSource,
    pool: torch.Tensor,
    fraction: float,
    split_dir: str | None,
    seed: int,
) -> torch.Tensor:
    """Source indices of the labelled images: ``split_dir/<p>percent.txt`` (SimCLR's name) or
    ``split_dir/semi_<p>percent.txt`` (the seed's) when a split directory is given, else a
    stratified ``fraction`` of ``pool`` seeded with ``seed``."""
    if split_dir:
        tag = percent_tag(fraction)
        names = [f"{tag}percent.txt", f"semi_{tag}percent.txt"]
        for name in names:
            path = Path(split_dir).expanduser() / name
            if path.is_file():
                return read_split_file(path, source)
        raise FileNotFoundError(
            f"eval.semi.split_dir: no split file {' or '.join(names)} in {split_dir} for the "
            f"{tag} % labels; add one or unset split_dir for a stratified subset"
        )
    return pool[stratified_subset(source.labels[pool], fraction, seed)]


def write_subset_file(path: Path, source: ImageSource, indices: torch.Tensor) -> None:
    """One image per line: its split-file key for file sources, its index otherwise."""
    keys = _file_keys(source) if isinstance(source, FileImageSource) else None
    lines = [keys[i] if keys else str(i) for i in indices.tolist()]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    os.replace(tmp, path)


def _nesterov_sgd(model: nn.Module, momentum: float) -> torch.optim.SGD:
    groups = parameter_groups([model])
    for group in groups:
        group.pop("always_adapt")
    return torch.optim.SGD(groups, lr=0.0, momentum=momentum, nesterov=True, weight_decay=0.0)


def semi_supervised(
    backbone: nn.Module,
    cfg: Any,
    fraction: float,
    epochs: int,
    run_dir: Path,
    device: torch.device,
    pretrained_head: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """Fine-tune a copy of ``backbone`` plus the ``eval.semi.head`` on ``fraction`` of the
    labels; the MLP head's first two layers start from ``pretrained_head`` (a projection head's
    ``mlp.*`` tensors) when given.

    Writes the labelled images used to ``run_dir/semi_<p>_subset.txt``, how the head started to
    ``run_dir/semi_<p>_head.json``, and checkpoints to
    ``run_dir/checkpoints/semi_<p>`` after every epoch (and resumes from there). Returns
    ``semi_<p>_top1`` (best val epoch) and ``semi_<p>_top5`` (at that epoch), in percent.
    """
    semi, data_cfg, env = cfg.eval.semi, cfg.data, current_env()
    stage = semi_stage_name(fraction)
    run_dir = Path(run_dir)
    data = load_labelled_data(cfg)
    indices = labelled_subset(data.train, data.train_pool, fraction, semi.split_dir, cfg.seed)
    if len(indices) < 2:
        raise ValueError(
            f"{stage}: {len(indices)} labelled image; fine-tuning with batch norm needs at "
            "least 2 (use a larger fraction or data.train_subset)"
        )
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_subset_file(run_dir / f"{stage}_subset.txt", data.train, indices)

    def named(result: dict[str, float]) -> dict[str, float]:
        return {f"{stage}_top1": result["top1"], f"{stage}_top5": result["top5"]}

    checkpoint_dir = RunDir(run_dir).checkpoints / stage
    done = completed_result(checkpoint_dir, epochs)
    if done is not None:
        return named(done)

    network = copy.deepcopy(backbone).requires_grad_(True)  # evaluated backbones arrive frozen
    head, record = semi_head(
        semi.head, network.embed_dim, data.num_classes, cfg.seed, pretrained_head
    )
    if env.is_main:
        (run_dir / f"{stage}_head.json").write_text(json.dumps(record, indent=2) + "\n")
    model = sync_batch_norm(Classifier(network, head, frozen_features=False), env, device)
    model.to(device)
    batch = min(semi.batch_size, len(indices) // env.world_size * env.world_size)  # global
    share = per_rank_batch(batch, env, "eval.semi.batch_size")
    size, workers = data_cfg.image_size, data_cfg.num_workers
    train, steps = augmented_batches(data.train, indices, size, batch, cfg.seed, workers, env)
    if semi.max_steps_per_epoch:
        steps = min(steps, semi.max_steps_per_epoch)
    val_shard = shard(data.val_indices, len(data.val), env)
    val = eval_batches(data.val, val_shard, size, share, workers)
    result = fit_classifier(
        model,
        _nesterov_sgd(model, semi.momentum),
        train,
        steps,
        val,
        epochs=epochs,
        lr=semi.base_lr * batch / 256,
        min_lr=semi.min_lr,
        lr_schedule=semi.lr_schedule,
        weight_decay=semi.weight_decay,
        checkpoint_dir=checkpoint_dir,
        device=device,
        amp_dtype=amp_dtype_for(cfg, device),
        stage=stage,
        env=env,
    )
    return named(result)
