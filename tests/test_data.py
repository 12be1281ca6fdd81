"""Tests of sslight.data: sources, stratified subsets, multi-crop recipes, deterministic loading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torchvision.io import write_png
from torchvision.transforms import v2 as T

from sslight.data import (
    AUG_RECIPES,
    SOURCES,
    CropSpec,
    DataRootError,
    EpochSampler,
    MultiCropDataset,
    blur_kernel_size,
    build_eval_loader,
    build_multicrop,
    build_source,
    build_train_loader,
    collate_views,
    default_data_root,
    stratified_subset,
)

GLOBAL = CropSpec(number=2, size=32, scale=(0.3, 1.0))
LOCAL = CropSpec(number=3, size=16, scale=(0.05, 0.3))
DEB_DIR = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "datasets"
    monkeypatch.setenv("SSLIGHT_DATA_DIR", str(root))
    return root


@pytest.fixture(scope="module")
def synthetic():
    return build_source("synthetic", None, "train", image_size=32)


def test_registry_names():
    assert SOURCES.names() == ["cifar10", "fashion_mnist", "image_folder", "stl10", "synthetic"]
    assert AUG_RECIPES.names() == ["dino", "moco", "swav"]
    with pytest.raises(KeyError, match="synthetic"):
        build_source("nope", None, "train")
    with pytest.raises(ValueError, match="split"):
        build_source("synthetic", None, "test")


def test_default_data_root(data_dir: Path):
    assert default_data_root() == data_dir


def test_synthetic_source(synthetic):
    assert len(synthetic) == 64 and synthetic.num_classes == 4
    image, label = synthetic[5]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    assert label == int(synthetic.labels[5]) and synthetic.labels.dtype == torch.long
    assert synthetic.labels.bincount().tolist() == [16] * 4
    val = build_source("synthetic", None, "val", image_size=16)
    assert len(val) == 32 and val[0][0].shape == (3, 16, 16)
    again = build_source("synthetic", None, "train", image_size=32)
    assert torch.equal(again[5][0], image)
    # 1-NN on raw pixels beats chance (25 %) clearly
    val32 = build_source("synthetic", None, "val", image_size=32)
    train_x = torch.stack([synthetic[i][0] for i in range(len(synthetic))]).flatten(1).float()
    val_x = torch.stack([val32[i][0] for i in range(len(val32))]).flatten(1).float()
    pred = synthetic.labels[torch.cdist(val_x, train_x).argmin(1)]
    assert (pred == val32.labels).float().mean() > 0.6


def test_stratified_subset_exact_and_proportional():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = stratified_subset(labels, 10, seed=0)
    assert idx.dtype == torch.int64 and len(idx) == 10
    assert torch.equal(idx, idx.sort().values) and len(idx.unique()) == 10
    assert labels[idx].bincount().tolist() == [5, 3, 2]
    # largest remainder: 7 × (0.5, 0.3, 0.2) = (3.5, 2.1, 1.4) → (4, 2, 1)
    assert labels[stratified_subset(labels, 7, seed=1)].bincount().tolist() == [4, 2, 1]
    assert len(stratified_subset(labels, 0.25, seed=0)) == 25
    assert len(stratified_subset(labels, 1.0, seed=0)) == 100


def test_stratified_subset_deterministic():
    labels = torch.arange(200) % 7
    a = stratified_subset(labels, 0.3, seed=3)
    assert torch.equal(a, stratified_subset(labels, 0.3, seed=3))
    assert not torch.equal(a, stratified_subset(labels, 0.3, seed=4))


@pytest.mark.parametrize("size", [0, 101, 0.0, 1.5, -0.1, True])
def test_stratified_subset_bad_size(size):
    with pytest.raises(ValueError, match="subset"):
        stratified_subset(torch.arange(100) % 3, size, seed=0)


def test_blur_kernel_size():
    assert [blur_kernel_size(s) for s in (16, 32, 96, 128, 224)] == [3, 3, 9, 13, 23]


@pytest.mark.parametrize("recipe", ["dino", "swav", "moco"])
def test_recipes_views(recipe, synthetic):
    transform = build_multicrop(recipe, GLOBAL, LOCAL)
    assert transform.sizes == [32, 32, 16, 16, 16]
    torch.manual_seed(0)
    views = transform(synthetic[0][0])
    assert [tuple(v.shape) for v in views] == [(3, s, s) for s in transform.sizes]
    for v in views:
        assert v.dtype == torch.float32 and torch.isfinite(v).all()
        assert v.min() >= -2.2 and v.max() <= 2.7  # ImageNet-normalised [0, 1] range
    assert min(float(v.min()) for v in views) < 0  # normalised, not raw [0, 1]
    no_locals = build_multicrop(recipe, GLOBAL, CropSpec(0, 16, (0.05, 0.3)))
    assert len(no_locals(synthetic[0][0])) == 2


def _flatten(transform) -> list:
    children = getattr(transform, "transforms", None)
    if children is None:
        return [transform]
    return [t for child in children for t in _flatten(child)]


def _of_type(view, kind) -> list:
    return [t for t in _flatten(view) if isinstance(t, kind)]


def test_dino_solarize_and_blur_per_view():
    transform = build_multicrop("dino", GLOBAL, LOCAL)
    solarize = [len(_of_type(v, T.RandomSolarize)) for v in transform.views]
    assert solarize == [0, 1, 0, 0, 0]
    assert _of_type(transform.views[1], T.RandomSolarize)[0].p == pytest.approx(0.2)
    # blur always on global 1 (bare, not wrapped in RandomApply); p 0.1 on global 2; 0.5 on locals
    assert any(isinstance(t, T.GaussianBlur) for t in transform.views[0].transforms)
    blur_p = [
        [
            t.p
            for t in v.transforms
            if isinstance(t, T.RandomApply) and isinstance(t.transforms[0], T.GaussianBlur)
        ]
        for v in transform.views
    ]
    assert blur_p == [[], [0.1], [0.5], [0.5], [0.5]]
    crop = _of_type(transform.views[0], T.RandomResizedCrop)[0]
    assert crop.interpolation == T.InterpolationMode.BICUBIC and crop.antialias
    for recipe in ("swav", "moco"):
        views = build_multicrop(recipe, GLOBAL, LOCAL).views
        assert not any(_of_type(v, T.RandomSolarize) for v in views)


def _epoch(sampler: EpochSampler) -> list[tuple[int, int]]:
    return list(sampler)


def test_epoch_sampler_determinism_and_epochs():
    a, b = EpochSampler(50, 8, seed=1), EpochSampler(50, 8, seed=1)
    assert _epoch(a) == _epoch(b)
    assert len(a) == 48 and a.batches_per_epoch == 6 and len(_epoch(a)) == 48
    first = _epoch(a)
    a.set_epoch(1)
    assert [p for p, _ in _epoch(a)] != [p for p, _ in first]
    seeds = [s for _, s in first]
    assert all(0 <= s < 2**63 for s in seeds) and len(set(seeds)) == len(seeds)
    assert len(_epoch(EpochSampler(50, 8, seed=1, drop_last=False))) == 50


def test_epoch_sampler_ranks_partition():
    shards = [_epoch(EpochSampler(50, 4, seed=2, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 48 // 3 for s in shards)
    positions = [p for shard in shards for p, _ in shard]
    assert len(set(positions)) == len(positions) == 48


def test_epoch_sampler_start_batch():
    sampler = EpochSampler(50, 8, seed=5)
    sampler.set_epoch(3)
    full = _epoch(sampler)
    sampler.set_start_batch(2)
    assert len(sampler) == 48 - 16 and sampler.batches_per_epoch == 6
    assert _epoch(sampler) == full[16:]
    sampler.set_epoch(4)  # a new epoch starts from its first batch
    assert len(sampler) == 48
    with pytest.raises(ValueError, match="global batch"):
        EpochSampler(10, 8, seed=0, world_size=2)


def test_views_identical_across_worker_counts(synthetic):
    transform = build_multicrop("dino", GLOBAL, LOCAL)
    indices = torch.arange(0, 64, 2)
    batches = []
    for workers in (0, 2):
        loader, sampler = build_train_loader(
            synthetic, transform, batch_size=8, seed=7, indices=indices, num_workers=workers
        )
        sampler.set_epoch(2)
        sampler.set_start_batch(2)
        batches.append(list(loader))
    (views0, labels0), (views2, labels2) = batches[0][0], batches[1][0]
    assert len(batches[0]) == len(batches[1]) == 2
    assert [tuple(v.shape) for v in views0] == [(8, 3, 32, 32)] * 2 + [(8, 3, 16, 16)] * 3
    assert torch.equal(labels0, labels2) and labels0.dtype == torch.long
    for a, b in zip(views0, views2, strict=True):
        assert torch.equal(a, b)
    # a sample's views depend only on its key, not on the order of fetching
    dataset = MultiCropDataset(synthetic, transform, indices)
    key = next(iter(sampler))
    torch.manual_seed(123)
    first, label = dataset[key]
    dataset[(0, 99)]
    again, _ = dataset[key]
    assert label == int(synthetic.labels[indices[key[0]]])
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    views, labels = collate_views([dataset[key], dataset[key]])
    assert views[0].shape == (2, 3, 32, 32) and labels.tolist() == [label, label]


def test_eval_loader(synthetic):
    loader = build_eval_loader(synthetic, 24, batch_size=16, indices=torch.arange(20))
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [16, 4]
    images, labels = batches[0]
    assert images.shape == (16, 3, 24, 24) and images.dtype == torch.float32
    assert torch.equal(labels, synthetic.labels[:16])


def test_image_folder(tmp_path: Path):
    root = tmp_path / "imagenet"
    for split, count in (("train", 3), ("val", 1)):
        for k, name in enumerate(["n01", "n02"]):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                gray = torch.full((1, 10 + i, 12), 40 * k + i, dtype=torch.uint8)
                write_png(
                    gray if i == 0 else gray.expand(3, -1, -1).contiguous(),
                    str(folder / f"img{i}.png"),
                )
    (root / "train" / "n01" / "notes.txt").write_text("not an image")
    train = build_source("image_folder", str(root), "train")
    assert len(train) == 6 and train.classes == ["n01", "n02"]
    image, label = train[3]
    assert image.shape == (3, 10, 12) and image.dtype == torch.uint8 and label == 1
    assert int(image[0, 0, 0]) == 40
    (root / "val" / "n01").rename(root / "val" / "n00")  # a class the train split lacks
    with pytest.raises(DataRootError, match="n00"):
        build_source("image_folder", str(root), "val")
    (root / "val" / "n00").rename(root / "val" / "n01")
    (root / "val" / "n01" / "img0.png").unlink()
    val = build_source("image_folder", str(root), "val")
    assert val.labels.tolist() == [1] and val.classes == train.classes


def test_missing_roots_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataRootError, match=str(missing / "val")) as err:
        build_source("image_folder", str(missing), "val")
    assert "train/<class>" in str(err.value)
    with pytest.raises(DataRootError, match=str(missing)):
        build_source("cifar10", str(missing), "train", download=False)
    with pytest.raises(DataRootError, match=str(missing)):
        build_source("stl10", str(missing), "val", download=False)
    monkeypatch.setenv("SSLIGHT_FASHION_MNIST_DEB_DIR", str(tmp_path / "no-deb"))
    with pytest.raises(DataRootError, match="apt-get install dataset-fashion-mnist") as err:
        build_source("fashion_mnist", str(missing), "train", download=False)
    assert str(missing) in str(err.value)


def test_fashion_mnist_from_debian_package(data_dir: Path):
    if not (DEB_DIR / "train-images-idx3-ubyte.gz").is_file():
        reason = f"{DEB_DIR} missing: apt-get install dataset-fashion-mnist"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    train = build_source("fashion_mnist", None, "train", download=False)
    val = build_source("fashion_mnist", None, "val", download=False)
    assert (len(train), len(val)) == (60000, 10000)
    assert train.num_classes == val.num_classes == 10
    image, label = val[0]
    assert image.shape == (3, 28, 28) and image.dtype == torch.uint8 and 0 <= label < 10
    assert torch.equal(image[0], image[2])
    assert train.labels.bincount().tolist() == [6000] * 10
    raw = data_dir / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        f"{kind}-{part}-ubyte"
        for kind in ("train", "t10k")
        for part in ("images-idx3", "labels-idx1")
    )
