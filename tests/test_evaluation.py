"""Linear evaluation and semi-supervised fine-tuning on the synthetic source (CPU, seconds)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sslight.data import (
    FileImageSource,
    TensorImageSource,
    build_source,
    linear_train_transform,
)
from sslight.engine.checkpoint import load_checkpoint
from sslight.evaluation import FeatureExtractor, linear_eval, percent_tag, semi_supervised
from sslight.evaluation import classifier as classifier_module
from sslight.evaluation import linear as linear_module
from sslight.evaluation import semi as semi_module
from sslight.evaluation.semi import labelled_subset, read_split_file
from sslight.models import build_backbone

CPU = torch.device("cpu")
LINEAR_KEYS = {"linear_top1", "linear_top5", "linear_top1_last", "linear_top5_last"}


def _backbone(name: str = "resnet18") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone(name)


def _linear_run(make_run, tmp_path: Path, **linear):
    return make_run(tmp_path, eval={"linear": linear})


def _assert_percentages(result: dict[str, float], keys: set[str]) -> None:
    assert set(result) == keys
    assert all(math.isfinite(v) and 0.0 <= v <= 100.0 for v in result.values())


def test_vit_features_concatenate_the_normed_cls_of_the_last_blocks():
    vit = _backbone("vit_tiny").eval()
    extractor = FeatureExtractor(vit, n_last_blocks=4)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = extractor(images)
        cls = vit(images)  # the final norm's CLS token: the last of the four
    assert extractor.out_dim == 4 * 192 == features.shape[1]
    assert torch.allclose(features[:, -192:], cls, atol=1e-5)
    with pytest.raises(ValueError, match="n_last_blocks"):
        FeatureExtractor(vit, n_last_blocks=13)


def test_cnn_features_are_the_pooled_backbone_output():
    cnn = _backbone("resnet18").eval()
    extractor = FeatureExtractor(cnn, n_last_blocks=4)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(extractor(images), cnn(images))
    assert extractor.out_dim == cnn.embed_dim == 512


def test_linear_train_transform_gives_normalised_crops():
    image = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8)
    out = linear_train_transform(32)(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


@pytest.mark.parametrize(
    ("optimizer", "base_lr", "epochs", "adapted"),
    [("auto", 5.0, 20, True), ("sgd", 0.5, 5, False)],  # auto: LARS for a CNN
)
def test_linear_eval_on_cached_features_beats_chance(
    make_run, tmp_path, optimizer, base_lr, epochs, adapted
):
    cfg = _linear_run(
        make_run,
        tmp_path,
        epochs=epochs,
        batch_size=16,
        optimizer=optimizer,
        base_lr=base_lr,
        cached_features=True,
    )
    result = linear_eval(_backbone(), cfg, tmp_path, CPU)
    _assert_percentages(result, LINEAR_KEYS)
    assert result["linear_top1"] >= 60.0  # chance is 25 % on 4 classes
    assert result["linear_top1"] >= result["linear_top1_last"]
    assert result["linear_top5"] == 100.0  # top-5 of 4 classes
    state = load_checkpoint(tmp_path / "checkpoints" / "linear")
    assert state["epoch"] == epochs
    assert state["model"]["weight"].shape == (4, 512)
    assert ("trust_coeff" in state["optimizer"]["param_groups"][0]) == adapted


def test_linear_eval_with_augmentation_caps_the_batch_and_leaves_the_backbone_frozen(
    make_run, tmp_path, monkeypatch
):
    batch_sizes = []
    real_batches = linear_module.augmented_batches

    def spy(source, indices, image_size, batch_size, *args):
        batch_sizes.append(batch_size)
        return real_batches(source, indices, image_size, batch_size, *args)

    monkeypatch.setattr(linear_module, "augmented_batches", spy)
    cfg = _linear_run(make_run, tmp_path, epochs=1, batch_size=4096, max_steps_per_epoch=2)
    backbone = _backbone()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    result = linear_eval(backbone, cfg, tmp_path, CPU)
    _assert_percentages(result, LINEAR_KEYS)
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included
    assert all(p.requires_grad for p in backbone.parameters())
    assert batch_sizes == [64]  # 4096 capped by the 64 training images


def test_vit_linear_eval_trains_sgd_on_the_last_four_cls_tokens(make_run, tmp_path):
    cfg = _linear_run(make_run, tmp_path, epochs=1, batch_size=32, cached_features=True)
    result = linear_eval(_backbone("vit_tiny"), cfg, tmp_path, CPU)
    _assert_percentages(result, LINEAR_KEYS)
    state = load_checkpoint(tmp_path / "checkpoints" / "linear")
    assert state["model"]["weight"].shape == (4, 4 * 192)
    assert "trust_coeff" not in state["optimizer"]["param_groups"][0]  # plain SGD


class _Interrupted(Exception):
    pass


def test_interrupted_linear_eval_continues_where_it_stopped(make_run, tmp_path, monkeypatch):
    linear = {"epochs": 2, "batch_size": 16, "max_steps_per_epoch": 1, "base_lr": 5.0}
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    straight = linear_eval(
        _backbone(), _linear_run(make_run, straight_dir, **linear), straight_dir, CPU
    )

    real_save = classifier_module.save_checkpoint
    saved_epochs: list[int] = []

    def save_then_stop(state, directory):
        real_save(state, directory)
        saved_epochs.append(state["epoch"])
        if state["epoch"] == 1:
            raise _Interrupted

    monkeypatch.setattr(classifier_module, "save_checkpoint", save_then_stop)
    cfg = _linear_run(make_run, resumed_dir, **linear)
    with pytest.raises(_Interrupted):
        linear_eval(_backbone(), cfg, resumed_dir, CPU)
    resumed = linear_eval(_backbone(), cfg, resumed_dir, CPU)
    assert saved_epochs == [1, 2]  # epoch 2 only, not a restart
    assert resumed == straight  # per-(seed, epoch) batches make the resume exact
    a = load_checkpoint(straight_dir / "checkpoints" / "linear")["model"]
    b = load_checkpoint(resumed_dir / "checkpoints" / "linear")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    again = linear_eval(_backbone(), cfg, resumed_dir, CPU)  # finished: nothing retrained
    assert again == straight and saved_epochs == [1, 2]


def _semi_run(make_run, tmp_path: Path, **semi):
    semi = {"fractions": [0.25], "epochs": [1], "batch_size": 8, "max_steps_per_epoch": 2, **semi}
    return make_run(tmp_path / "run", eval={"semi": semi})


def test_semi_supervised_uses_the_split_file(make_run, tmp_path, monkeypatch):
    split_dir = tmp_path / "splits"
    split_dir.mkdir()
    listed = [3, 7, 10, 20, 33, 41, 50, 63]
    (split_dir / "25percent.txt").write_text("".join(f"{i}\n" for i in listed))
    used = []
    real_batches = semi_module.augmented_batches

    def spy(source, indices, *args):
        used.append(indices.tolist())
        return real_batches(source, indices, *args)

    monkeypatch.setattr(semi_module, "augmented_batches", spy)
    cfg = _semi_run(make_run, tmp_path, split_dir=str(split_dir))
    run_dir = tmp_path / "run"
    result = semi_supervised(_backbone(), cfg, 0.25, 1, run_dir, CPU)
    _assert_percentages(result, {"semi_25_top1", "semi_25_top5"})
    written = (run_dir / "semi_25_subset.txt").read_text().split()
    assert [int(i) for i in written] == listed
    assert used == [listed]


def test_semi_supervised_falls_back_to_a_stratified_subset_and_fine_tunes_everything(
    make_run, tmp_path
):
    cfg = _semi_run(make_run, tmp_path)
    run_dir = tmp_path / "run"
    backbone = _backbone().requires_grad_(False)  # as an EMA teacher arrives
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    result = semi_supervised(backbone, cfg, 0.25, 1, run_dir, CPU)
    _assert_percentages(result, {"semi_25_top1", "semi_25_top5"})
    subset = [int(i) for i in (run_dir / "semi_25_subset.txt").read_text().split()]
    assert len(subset) == 16 == len(set(subset))  # 25 % of 64
    labels = build_source("synthetic", None, "train", image_size=32).labels
    assert torch.bincount(labels[subset]).tolist() == [4, 4, 4, 4]
    state = load_checkpoint(run_dir / "checkpoints" / "semi_25")
    tuned = {k.removeprefix("features."): v for k, v in state["model"].items()}
    assert not torch.equal(tuned["conv1.weight"], before["conv1.weight"])  # trunk trained
    assert not torch.equal(tuned["bn1.running_mean"], before["bn1.running_mean"])  # BN updated
    assert torch.equal(backbone.conv1.weight, before["conv1.weight"])  # the original untouched
    mtime = (run_dir / "checkpoints" / "semi_25" / "last.pt").stat().st_mtime_ns
    assert semi_supervised(backbone, cfg, 0.25, 1, run_dir, CPU) == result  # done: no retraining
    assert (run_dir / "checkpoints" / "semi_25" / "last.pt").stat().st_mtime_ns == mtime


def test_stratified_labelled_subset_is_drawn_from_the_training_pool():
    labels = torch.arange(64) % 4
    source = TensorImageSource(torch.zeros(64, 4, 4, dtype=torch.uint8), labels, "abcd")
    pool = torch.arange(16, 32)  # e.g. data.train_subset: 4 images per class
    chosen = labelled_subset(source, pool, 0.5, None, seed=0)
    assert len(chosen) == 8 and set(chosen.tolist()) <= set(pool.tolist())
    assert torch.bincount(labels[chosen], minlength=4).tolist() == [2, 2, 2, 2]
    full = labelled_subset(source, torch.arange(64), 0.25, None, seed=0)
    assert len(full) == 16 and torch.bincount(labels[full]).tolist() == [4, 4, 4, 4]


def test_split_files_name_images_by_file_name(tmp_path):
    files = [tmp_path / "train" / c / f"{c}_{i}.JPEG" for c in ("n01", "n02") for i in range(3)]
    source = FileImageSource(files, torch.tensor([0, 0, 0, 1, 1, 1]), ["n01", "n02"])
    split = tmp_path / "1percent.txt"
    split.write_text("n02_1.JPEG\n\ntrain/n01/n01_2.JPEG\n# a comment\n")
    assert read_split_file(split, source).tolist() == [2, 4]
    split.write_text("n02_1.JPEG\nmissing.JPEG\n")
    with pytest.raises(ValueError, match="1 of 2 entries match no training image"):
        read_split_file(split, source)


def test_the_seeds_own_split_files_are_read_by_class_and_file_name(tmp_path):
    """classification/data/imagenet_subsets/semi_1percent.txt: ``index,label,wnid,file``; the
    index counts the seed's HDF5 packing, so only ``<wnid>/<file>`` is matched."""
    files = [tmp_path / "train" / c / f"{i}.JPEG" for c in ("n01", "n02") for i in range(3)]
    source = FileImageSource(files, torch.tensor([0, 0, 0, 1, 1, 1]), ["n01", "n02"])
    (tmp_path / "semi_1percent.txt").write_text("1021436,1,n02,1.JPEG\n17,0,n01,2.JPEG\n")
    chosen = labelled_subset(source, torch.arange(6), 0.01, str(tmp_path), seed=0)
    assert chosen.tolist() == [2, 4]  # file names repeat across classes: <wnid>/<file> decides
    with pytest.raises(FileNotFoundError, match=r"10percent\.txt or semi_10percent\.txt"):
        labelled_subset(source, torch.arange(6), 0.1, str(tmp_path), seed=0)


def test_split_files_of_in_memory_sets_hold_indices(tmp_path):
    source = TensorImageSource(torch.zeros(8, 4, 4, dtype=torch.uint8), torch.arange(8) % 2, "ab")
    split = tmp_path / "10percent.txt"
    split.write_text("5\n1\n5\n")
    assert read_split_file(split, source).tolist() == [1, 5]
    split.write_text("1\n8\n")
    with pytest.raises(ValueError, match="line 2: index 8 out of range"):
        read_split_file(split, source)


def test_percent_tags():
    assert [percent_tag(f) for f in (0.01, 0.1, 0.005, 1.0)] == ["1", "10", "0.5", "100"]
