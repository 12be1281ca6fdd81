"""Image sources: one labelled image set per (dataset, split), yielding uint8 ``[3, H, W]`` tensors.

In-memory datasets (Fashion-MNIST, CIFAR-10, STL-10, synthetic) keep a single uint8 tensor and
index it; ``image_folder`` (ImageNet layout) decodes one file per item.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sslight.registry import Registry

SPLITS = ("train", "val")
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".webp")
FASHION_MNIST_DEB_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGE_FOLDER_LAYOUT = "ROOT/train/<class>/*.JPEG|jpg|png and ROOT/val/<class>/*"


class DataRootError(ValueError):
    """A dataset is missing and could not be downloaded; the message says how to fix it."""


class ImageSource(Dataset):
    """A labelled image set: ``source[i] -> (uint8 tensor [3, H, W], int label)``."""

    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)


class TensorImageSource(ImageSource):
    """Images held in one uint8 tensor, ``(N, 3, H, W)`` or grayscale ``(N, H, W)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> None:
        if images.dtype != torch.uint8 or images.ndim not in (3, 4):
            raise ValueError(
                f"images must be uint8 (N,H,W) or (N,3,H,W), got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.classes = list(classes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if image.ndim == 2:
            image = image.unsqueeze(0).expand(3, -1, -1).contiguous()
        return image, int(self.labels[index])


class FileImageSource(ImageSource):
    """Images decoded from files on each access (RGB, uint8)."""

    def __init__(self, files: Sequence[Path], labels: torch.Tensor, classes: Sequence[str]) -> None:
        self.files = [Path(f) for f in files]
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.classes = list(classes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        # torchvision on first use: validating a config lists SOURCES without importing it
        from torchvision.io import ImageReadMode, decode_image, read_file

        image = decode_image(read_file(str(self.files[index])), mode=ImageReadMode.RGB)
        return image, int(self.labels[index])


SourceFactory = Callable[[Path, str, int, bool], ImageSource]
SOURCES: Registry[SourceFactory] = Registry("dataset")


def default_data_root() -> Path:
    """``$SSLIGHT_DATA_DIR`` or ``~/.cache/sslight/datasets``."""
    return Path(os.environ.get("SSLIGHT_DATA_DIR") or "~/.cache/sslight/datasets").expanduser()


def build_source(
    name: str, root: str | None, split: str, *, image_size: int = 32, download: bool = True
) -> ImageSource:
    """Build dataset ``name`` (see ``SOURCES.names()``) for ``split`` in {"train", "val"}."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    factory = SOURCES.get(name)
    path = Path(root).expanduser() if root else default_data_root()
    return factory(path, split, image_size, download)


def _missing(name: str, root: Path, detail: str) -> DataRootError:
    return DataRootError(
        f"{name} not found under {root} ({detail}); set data.root=DIR to a directory holding it, "
        f"or allow downloading (network access needed)"
    )


def _torchvision_dataset(name: str, root: Path, download: bool, build: Callable[[bool], object]):
    try:
        return build(download)
    except (RuntimeError, OSError) as err:  # torchvision: "Dataset not found"; URLError ⊂ OSError
        detail = f"download failed: {err}" if download else f"download disabled: {err}"
        raise _missing(name, root, detail) from err


def _fashion_mnist_deb_dir() -> Path:
    return Path(os.environ.get("SSLIGHT_FASHION_MNIST_DEB_DIR") or FASHION_MNIST_DEB_DIR)


def _unpack_fashion_mnist(deb_dir: Path, raw_dir: Path) -> bool:
    """Gunzip the Debian idx files into ``raw_dir`` once; False if the package is absent."""
    if not all((deb_dir / f"{name}.gz").is_file() for name in FASHION_MNIST_FILES):
        return False
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name in FASHION_MNIST_FILES:
        target = raw_dir / name
        if target.is_file():
            continue
        fd, tmp = tempfile.mkstemp(dir=raw_dir, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, gzip.open(deb_dir / f"{name}.gz", "rb") as src:
                shutil.copyfileobj(src, out)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return True


@SOURCES.register("fashion_mnist")
def fashion_mnist(root: Path, split: str, image_size: int, download: bool) -> ImageSource:
    """Fashion-MNIST (60k/10k, 28×28 grayscale), from ``dataset-fashion-mnist`` when installed."""
    from torchvision.datasets import FashionMNIST

    deb_dir = _fashion_mnist_deb_dir()
    from_deb = _unpack_fashion_mnist(deb_dir, root / "FashionMNIST" / "raw")
    train = split == "train"
    try:
        ds = FashionMNIST(str(root), train=train, download=download and not from_deb)
    except (RuntimeError, OSError) as err:
        raise DataRootError(
            f"Fashion-MNIST not found under {root / 'FashionMNIST' / 'raw'} and not in {deb_dir} "
            f"({err}); run `apt-get install dataset-fashion-mnist`, set data.root=DIR to a "
            f"directory holding FashionMNIST/raw/*-ubyte, or allow downloading"
        ) from err
    return TensorImageSource(ds.data.contiguous(), ds.targets, ds.classes)


@SOURCES.register("cifar10")
def cifar10(root: Path, split: str, image_size: int, download: bool) -> ImageSource:
    """CIFAR-10 (50k/10k, 32×32 RGB) via torchvision."""
    from torchvision.datasets import CIFAR10

    ds = _torchvision_dataset(
        "CIFAR-10",
        root,
        download,
        lambda dl: CIFAR10(str(root), train=split == "train", download=dl),
    )
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return TensorImageSource(images, torch.as_tensor(ds.targets), ds.classes)


@SOURCES.register("stl10")
def stl10(root: Path, split: str, image_size: int, download: bool) -> ImageSource:
    """STL-10 labelled splits (5k train / 8k test as val, 96×96 RGB) via torchvision."""
    from torchvision.datasets import STL10

    ds = _torchvision_dataset(
        "STL-10",
        root,
        download,
        lambda dl: STL10(str(root), split="train" if split == "train" else "test", download=dl),
    )
    images = torch.from_numpy(np.ascontiguousarray(ds.data))
    return TensorImageSource(images, torch.from_numpy(ds.labels.astype(np.int64)), ds.classes)


def _class_dirs(path: Path) -> list[str]:
    return sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))


@SOURCES.register("image_folder")
def image_folder(root: Path, split: str, image_size: int, download: bool) -> ImageSource:
    """ImageNet layout: ``root/{train,val}/<class>/*``; val labels use the train class list."""
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataRootError(
            f"image folder split directory {split_dir} does not exist; expected layout "
            f"{IMAGE_FOLDER_LAYOUT} (set data.root=ROOT)"
        )
    train_dir = root / "train"
    classes = _class_dirs(train_dir if train_dir.is_dir() else split_dir)
    index = {name: i for i, name in enumerate(classes)}
    files: list[Path] = []
    labels: list[int] = []
    for name in _class_dirs(split_dir):
        if name not in index:
            raise DataRootError(
                f"class directory {split_dir / name} is not among the train classes in {train_dir}"
            )
        found = sorted(
            p
            for p in (split_dir / name).iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        files.extend(found)
        labels.extend([index[name]] * len(found))
    if not files:
        raise DataRootError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {split_dir}; expected layout "
            f"{IMAGE_FOLDER_LAYOUT}"
        )
    return FileImageSource(files, torch.tensor(labels, dtype=torch.long), classes)


SYNTHETIC_SIZES = {"train": 64, "val": 32}
SYNTHETIC_COLOURS = ((200, 60, 60), (60, 200, 60), (60, 60, 200), (200, 200, 60))


@SOURCES.register("synthetic")
def synthetic(root: Path, split: str, image_size: int, download: bool) -> ImageSource:
    """Tiny deterministic 4-class set for unit tests: class colour × stripe orientation + noise."""
    n = SYNTHETIC_SIZES[split]
    gen = torch.Generator().manual_seed(SPLITS.index(split) + 1)
    labels = torch.arange(n) % len(SYNTHETIC_COLOURS)
    labels = labels[torch.randperm(n, generator=gen)]
    yy, xx = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    period = max(4, image_size // 4)
    waves = [xx, yy, xx + yy, xx - yy]  # vertical, horizontal, diagonal, anti-diagonal stripes
    images = torch.empty(n, 3, image_size, image_size, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        phase = int(torch.randint(period, (1,), generator=gen))
        stripes = (((waves[label] + phase) % period) < period // 2).float()
        colour = torch.tensor(SYNTHETIC_COLOURS[label], dtype=torch.float32).view(3, 1, 1)
        image = colour * (0.55 + 0.45 * stripes)
        image = image + 20.0 * torch.randn(3, image_size, image_size, generator=gen)
        images[i] = image.round().clamp(0, 255).to(torch.uint8)
    return TensorImageSource(images, labels, [f"pattern{k}" for k in range(len(SYNTHETIC_COLOURS))])
