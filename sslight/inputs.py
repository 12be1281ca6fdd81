"""The paths a run config reads and what each must hold, checkable before any job starts.

A job that finds its dataset missing fails on the compute node, after it waited in the queue.
``input_paths(cfg)`` lists each path the config's stages will open, with its config key, and
``InputPath.problem()`` checks it cheaply (folders and file names, never file contents):

- ``data.root`` of an ``image_folder`` dataset (the ImageNet layout), for every stage but the COCO
  ones: ``train/`` and ``val/`` with class folders holding images, val's classes among train's;
- ``eval.detection.data_root`` for ``detection`` and ``segmentation`` (unless unset or
  ``synthetic``): ``annotations/instances_<split>.json`` and ``<split>/`` for both splits;
- ``eval.semi.split_dir`` for the ``semi_<p>`` stages: one ``<p>percent.txt`` per stage;
- ``init.weights``: a file, or a folder holding the cell's seed release (``released_name``),
  ``checkpoints/last.pt`` or ``last.pt``.

In-memory, generated and downloaded datasets (synthetic, Fashion-MNIST, CIFAR-10, STL-10) have no
path to check here. The loaders check again, fully, when the job runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslight.data.sources import IMAGE_EXTENSIONS, IMAGE_FOLDER_LAYOUT, SPLITS, default_data_root
from sslight.engine.checkpoint import LAST, PREVIOUS
from sslight.stages.names import COCO_STAGES, percent_tag, semi_stage_name

COCO_LAYOUT = "ROOT/annotations/instances_<split>.json and ROOT/<split>/<file_name>"
SYNTHETIC_COCO = "synthetic"  # eval.detection.data_root: the generated set, no path
FOLDER_DATASETS = ("image_folder",)  # the datasets read from data.root as they are


@dataclass(frozen=True)
class InputPath:
    """One path of a config: its ``key``, the ``path`` a job opens, what ``kind`` of thing it must
    be (a key of ``CHECKS``) and the ``names`` the check looks for in it."""

    key: str
    path: Path
    kind: str
    names: tuple[str, ...] = ()

    def problem(self) -> str | None:
        """What is wrong with the path (``<path> has no ... (expected ...)``), or None."""
        return CHECKS[self.kind](self.path, self.names)


def _folders(path: Path) -> list[str]:
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _holds_image(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file() for e in entries)


def _image_folder(root: Path, names: tuple[str, ...]) -> str | None:
    expected = f"(expected {IMAGE_FOLDER_LAYOUT})"
    if not root.is_dir():
        return f"{root} is not a directory {expected}"
    classes: dict[str, list[str]] = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            return f"{root} has no {split}/ folder {expected}"
        classes[split] = _folders(folder)
        if not classes[split]:
            return f"{folder} has no class folders {expected}"
        if not any(_holds_image(folder / name) for name in classes[split]):
            count, kinds = len(classes[split]), ", ".join(IMAGE_EXTENSIONS)
            return f"{folder}: none of its {count} class folders holds images ({kinds}) {expected}"
    strays = sorted(set(classes["val"]) - set(classes["train"]))
    if strays:
        return (
            f"{root / 'val' / strays[0]} is not a class of {root / 'train'} "
            f"({len(strays)} of val's {len(classes['val'])} classes are not; expected val's "
            "classes among train's: labels are train's class indices)"
        )
    return None


def _coco_root(root: Path, splits: tuple[str, ...]) -> str | None:
    expected = (
        f"(expected {COCO_LAYOUT}, the splits named by eval.detection.train_split and val_split)"
    )
    if not root.is_dir():
        return f"{root} is not a directory {expected}"
    for split in splits:
        annotations = Path("annotations") / f"instances_{split}.json"
        if not (root / annotations).is_file():
            return f"{root} has no {annotations} {expected}"
        if not (root / split).is_dir():
            return f"{root} has no {split}/ image folder {expected}"
    return None


def _split_files(folder: Path, files: tuple[str, ...]) -> str | None:
    expected = f"(expected {', '.join(files)}: one image per line, as released with SimCLR)"
    if not folder.is_dir():
        return f"{folder} is not a directory {expected}"
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        return f"{folder} has no {missing[0]} {expected}; unset split_dir for stratified subsets"
    return None


def _weights(path: Path, release: tuple[str, ...]) -> str | None:
    expected = (
        "an export (backbone.pt), a run directory, a last.pt, a seed release (*.pth.tar) or a "
        f"folder of seed releases holding {release[0]}"
    )
    if path.is_file():
        return None
    if not path.exists():
        return f"{path}: no such file or directory (expected {expected})"
    found = [path / release[0]]
    found += [folder / name for folder in (path / "checkpoints", path) for name in (LAST, PREVIOUS)]
    if any(candidate.is_file() for candidate in found):
        return None
    return (
        f"{path} holds neither {release[0]} nor checkpoints/{LAST} nor {LAST} (expected {expected})"
    )


CHECKS: dict[str, Callable[[Path, tuple[str, ...]], str | None]] = {
    "image_folder": _image_folder,
    "coco_root": _coco_root,
    "semi_split_files": _split_files,
    "init_weights": _weights,
}


def input_paths(cfg: Any) -> list[InputPath]:
    """The paths ``cfg``'s stages will read (see the module docstring), none for generated data."""
    stages, det, semi = set(cfg.stages), cfg.eval.detection, cfg.eval.semi
    paths: list[InputPath] = []
    if cfg.data.dataset in FOLDER_DATASETS and stages - set(COCO_STAGES):
        root = Path(cfg.data.root).expanduser() if cfg.data.root else default_data_root()
        paths.append(InputPath("data.root", root, cfg.data.dataset))
    if stages & set(COCO_STAGES) and det.data_root not in (None, "", SYNTHETIC_COCO):
        root, splits = Path(det.data_root).expanduser(), (det.train_split, det.val_split)
        paths.append(InputPath("eval.detection.data_root", root, "coco_root", splits))
    files = tuple(
        f"{percent_tag(f)}percent.txt" for f in semi.fractions if semi_stage_name(f) in stages
    )
    if semi.split_dir and files:
        folder = Path(semi.split_dir).expanduser()
        paths.append(InputPath("eval.semi.split_dir", folder, "semi_split_files", files))
    if cfg.init.weights:
        from sslight.weights.seed_import import released_name

        release = released_name(cfg.method, cfg.backbone, cfg.views.policy)
        weights = Path(cfg.init.weights).expanduser()
        paths.append(InputPath("init.weights", weights, "init_weights", (release,)))
    return paths
