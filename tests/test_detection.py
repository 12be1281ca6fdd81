"""COCO transfer stages: the generated Fashion-MNIST set, pretrained-weight loading, training and
COCO evaluation, and ``sslight run`` with the ``detection`` / ``segmentation`` stages."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torch import nn
from torchvision.io import read_image
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.ops import MultiScaleRoIAlign, roi_align

import sslight
from sslight.config import ConfigError
from sslight.data.coco import CocoDetection, TrainBatches
from sslight.data.sources import DataRootError
from sslight.data.synthetic_coco import ensure_synthetic_coco, write_split
from sslight.engine.checkpoint import load_checkpoint
from sslight.evaluation.coco_eval import coco_ap, predict
from sslight.evaluation.detection import transfer
from sslight.evaluation.detection_heads import fast_rcnn_loss
from sslight.evaluation.detection_model import build_detector
from sslight.evaluation.detection_train import lr_at, train_detector
from sslight.models.backbones import build_backbone
from sslight.weights.eval_backbone import load_eval_backbone

DEB_DIR = Path("/usr/share/datasets/fashion-mnist")
TINY_DETECTION = {
    "synthetic_canvas_size": 64,
    "synthetic_images": [8, 2],
    "max_iters": 2,
    "batch_size": 2,
    "steps": [1],
    "warmup_iters": 1,
    "min_size_train": [64],
    "min_size_test": 64,
    "max_size": 64,
    "rpn_batch_size_per_image": 32,
    "roi_batch_size_per_image": 32,
    "rpn_proposals_test": 50,
    "detections_per_image": 10,
}
pytestmark = [
    pytest.mark.skipif(
        not (DEB_DIR / "train-images-idx3-ubyte.gz").exists(),
        reason=f"{DEB_DIR} missing: apt-get install dataset-fashion-mnist",
    ),
    pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),  # pycocotools
]


@pytest.fixture(scope="module", autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory):
    """One data cache for the module: Fashion-MNIST is unpacked and the set generated once."""
    root = tmp_path_factory.mktemp("datasets")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SSLIGHT_DATA_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def coco_root() -> Path:
    return ensure_synthetic_coco(64, (8, 2))


def _pretrained_run(make_run, path: Path, backbone: str, **detection):
    det = {**TINY_DETECTION, **detection}
    cfg = make_run(path, backbone=backbone, eval={"detection": det}, stages=["pretrain"])
    sslight.run(cfg)
    return cfg


def test_same_seed_gives_byte_identical_annotations(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_split(tmp_path / name, "val", "val", 6, 64, seed)
    read = lambda name: (tmp_path / name / "annotations" / "instances_val.json").read_bytes()  # noqa: E731
    assert read("a") == read("b")
    assert read("a") != read("c")


def test_boxes_and_masks_are_exact(coco_root):
    data = json.loads((coco_root / "annotations" / "instances_train.json").read_text())
    assert [c["id"] for c in data["categories"]] == list(range(1, 11))
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    assert len(by_image) == len(data["images"]) == 8
    for image in data["images"]:
        canvas = read_image(str(coco_root / "train" / image["file_name"]))[0].numpy()
        union = np.zeros_like(canvas, dtype=bool)
        for ann in by_image[image["id"]]:
            mask = mask_utils.decode(ann["segmentation"]).astype(bool)
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            x, y, w, h = ann["bbox"]
            assert (x, y, x + w - 1, y + h - 1) == (cols[0], rows[0], cols[-1], rows[-1])
            assert ann["area"] == mask.sum() == (canvas[y : y + h, x : x + w] > 0).sum()
            assert not (union & mask).any()
            union |= mask
        assert np.array_equal(union, canvas > 0)  # every item pixel belongs to exactly one mask


def test_missing_coco_root_names_the_expected_layout(tmp_path):
    with pytest.raises(DataRootError, match=r"annotations/instances_<split>\.json"):
        CocoDetection(tmp_path, "val2017", masks=False, train=False)


def test_train_batches_depend_only_on_seed_and_iteration():
    full = list(TrainBatches(10, 3, 7, seed=5))
    assert list(TrainBatches(10, 3, 7, seed=5, start=4)) == full[4:]
    assert all(len(batch) == 3 for batch in full)
    assert full != list(TrainBatches(10, 3, 7, seed=6))


class _Oracle(nn.Module):
    """Answers each image with its ground truth, in the dataset's order."""

    def __init__(self, dataset: CocoDetection) -> None:
        super().__init__()
        self.targets = iter(dataset[i][1] for i in range(len(dataset)))

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        answers = []
        for _ in images:
            target = next(self.targets)
            answers.append(
                {
                    "boxes": target["boxes"],
                    "labels": target["labels"],
                    "scores": torch.ones(len(target["labels"])),
                    "masks": target["masks"][:, None].float(),
                }
            )
        return answers


def test_an_oracle_scores_100_ap_on_boxes_and_masks(coco_root):
    val = CocoDetection(coco_root, "train", masks=True, train=False)
    results = predict(_Oracle(val), val, torch.device("cpu"), batch_size=3, workers=0)
    assert coco_ap(val, results, "bbox") == {"ap": 100.0, "ap50": 100.0, "ap75": 100.0}
    assert coco_ap(val, results, "segm")["ap"] == 100.0
    assert coco_ap(val, [], "bbox") == {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}


@pytest.mark.parametrize(
    ("backbone", "freeze_bn", "prefix"),
    [("resnet18", False, "backbone."), ("mobilenet_v2", True, "backbone.features.")],
)
def test_detector_starts_from_the_pretrained_weights(
    make_run, tmp_path, backbone, freeze_bn, prefix
):
    cfg = _pretrained_run(make_run, tmp_path, backbone, freeze_bn=freeze_bn)
    student = load_checkpoint(tmp_path / "checkpoints")["model"]  # eval.network: student
    pretrained = {k[len(prefix) :]: v for k, v in student.items() if k.startswith(prefix)}
    loaded = load_eval_backbone(cfg, tmp_path, torch.device("cpu"))
    model = build_detector(loaded, backbone, 11, cfg.eval.detection, masks=True)

    body = model.backbone.body.state_dict()
    compared = [key for key in body if key in pretrained]
    assert len(compared) >= 0.9 * len(body)  # every stage up to the last returned one
    for key in compared:
        assert torch.equal(body[key], pretrained[key]), key
    convs = [key for key in compared if body[key].ndim == 4]
    assert len(convs) > 15
    fresh = build_detector(build_backbone(backbone), backbone, 11, cfg.eval.detection, masks=True)
    assert not torch.equal(fresh.backbone.body.state_dict()[convs[-1]], body[convs[-1]])
    assert all(p.requires_grad for p in model.backbone.body.parameters())


def _detector(make_run, tmp_path, **detection):
    """A Mask R-CNN on a fresh ResNet18 with ``TINY_DETECTION`` updated by ``detection``."""
    det = make_run(tmp_path, eval={"detection": {**TINY_DETECTION, **detection}}).eval.detection
    return build_detector(build_backbone("resnet18"), "resnet18", 11, det, masks=True)


def _pyramid(channels: int = 3) -> dict[str, torch.Tensor]:
    """P2–P5 of a 512 px image (strides 4–32), random."""
    torch.manual_seed(0)
    return {str(i): torch.randn(1, channels, 128 >> i, 128 >> i) for i in range(4)}


# A 100 px box falls on P2 (stride 4), a 300 px one on P4 (stride 16): eq. 1 of the FPN paper
BOXES = torch.tensor([[10.3, 20.7, 110.3, 120.7], [101.5, 90.2, 401.5, 390.2]])


def test_box_and_mask_heads_pool_with_roi_align_v2_by_default(make_run, tmp_path):
    heads = _detector(make_run, tmp_path).roi_heads
    features, shapes = _pyramid(), [(512, 512)]
    for pool, size in ((heads.box_roi_pool, 7), (heads.mask_roi_pool, 14)):
        assert (pool.aligned, pool.sampling_ratio, pool.output_size) == (True, 0, (size, size))
        pooled = pool(features, [BOXES], shapes)
        for row, (level, stride) in enumerate((("0", 4), ("2", 16))):
            rois = torch.cat([torch.zeros(1, 1), BOXES[row : row + 1]], dim=1)
            expected = roi_align(features[level], rois, size, 1 / stride, 0, aligned=True)
            torch.testing.assert_close(pooled[row : row + 1], expected, rtol=0, atol=0)
        old = MultiScaleRoIAlign(pool.featmap_names, size, 2)(features, [BOXES], shapes)
        assert (pooled - old).abs().max() > 1e-2  # not torchvision's default pooling


def test_unaligned_roi_pooling_is_torchvisions(make_run, tmp_path):
    heads = _detector(make_run, tmp_path, roi_align_aligned=False, roi_sampling_ratio=2).roi_heads
    features, shapes = _pyramid(), [(512, 512)]
    for pool, size in ((heads.box_roi_pool, 7), (heads.mask_roi_pool, 14)):
        old = MultiScaleRoIAlign(pool.featmap_names, size, 2)(features, [BOXES], shapes)
        assert torch.equal(pool(features, [BOXES], shapes), old)
    with pytest.raises(ConfigError, match="roi_sampling_ratio"):
        make_run(tmp_path, eval={"detection": {"roi_sampling_ratio": -1}})


def test_box_regression_loss_with_beta_0_is_l1():
    class_logits = torch.tensor([[0.1, 2.0, -1.0], [1.5, 0.0, 0.2], [0.3, -0.4, 0.9]])
    box_regression = torch.arange(36.0).reshape(3, 12) / 100
    labels = [torch.tensor([1, 0]), torch.tensor([2])]  # two images, RoI 1 background
    targets = [torch.tensor([[0.05, 0.1, 0.5, 0.0], [9.0, 9.0, 9.0, 9.0]]), torch.full((1, 4), 0.3)]
    # foreground RoI 0 is scored on class 1's deltas (0.04..0.07), RoI 2 on class 2's (0.32..0.35)
    l1 = (box_regression[0, 4:8] - targets[0][0]).abs().sum()
    l1 += (box_regression[2, 8:12] - targets[1][0]).abs().sum()
    classification, l1_loss = fast_rcnn_loss(class_logits, box_regression, labels, targets, 0.0)
    torch.testing.assert_close(l1_loss, l1 / 3)
    tv_classification, tv_box = fastrcnn_loss(class_logits, box_regression, labels, targets)
    assert torch.equal(classification, tv_classification)
    ninth = fast_rcnn_loss(class_logits, box_regression, labels, targets, 1 / 9)
    torch.testing.assert_close(ninth[1], tv_box)
    assert abs(l1_loss.item() - tv_box.item()) > 1e-3  # |errors| < 1/9 are squared at 1/9


def _roi_inputs(generator: torch.Generator):
    """FPN features of a 64 px image, proposals and one target with a box and a mask."""
    features = {
        str(i): torch.randn(1, 256, 16 >> i, 16 >> i, generator=generator) for i in range(4)
    }
    corner = torch.rand(40, 2, generator=generator) * 40
    proposals = [torch.cat([corner, corner + 8 + torch.rand(40, 2, generator=generator) * 16], 1)]
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 10:30, 12:40], masks[1, 35:60, 30:50] = 1, 1
    boxes = torch.tensor([[12.0, 10.0, 39.0, 29.0], [30.0, 35.0, 49.0, 59.0]])
    targets = [{"boxes": boxes, "labels": torch.tensor([3, 7]), "masks": masks}]
    return features, proposals, [(64, 64)], targets


def test_roi_heads_train_as_torchvision_but_for_the_box_loss(make_run, tmp_path):
    heads = _detector(make_run, tmp_path, box_smooth_l1_beta=1 / 9).roi_heads.train()
    inputs = _roi_inputs(torch.Generator().manual_seed(0))
    losses = {}
    for name, forward in (("ours", heads.forward), ("torchvision", RoIHeads.forward)):
        torch.manual_seed(0)  # the same sampled RoIs
        args = inputs if name == "ours" else (heads, *inputs)
        result, losses[name] = forward(*args)
        assert result == []
    assert set(losses["ours"]) == {"loss_classifier", "loss_box_reg", "loss_mask"}
    for key, value in losses["torchvision"].items():
        torch.testing.assert_close(losses["ours"][key], value, rtol=1e-6, atol=0, msg=key)
    heads.box_smooth_l1_beta = 0.0
    torch.manual_seed(0)
    l1 = heads(*inputs)[1]
    assert l1["loss_mask"] == losses["torchvision"]["loss_mask"]
    assert l1["loss_box_reg"] > losses["torchvision"]["loss_box_reg"] > 0
    heads.eval()
    assert {"boxes", "labels", "scores", "masks"} <= set(heads(*inputs[:3])[0][0])


def test_run_trains_and_evaluates_detection_and_segmentation(make_run, tmp_path):
    stages = ["pretrain", "detection", "segmentation"]
    cfg = make_run(tmp_path, eval={"detection": TINY_DETECTION}, stages=stages)
    result = sslight.run(cfg)

    names = {
        "detection_box_ap",
        "detection_box_ap50",
        "detection_box_ap75",
        "segmentation_box_ap",
        "segmentation_mask_ap",
        "segmentation_mask_ap50",
        "segmentation_mask_ap75",
    }
    assert names <= set(result)
    assert all(0 <= result[name] <= 100 for name in names)
    assert all(result["stages"][s]["status"] == "done" for s in stages)
    for stage in ("detection", "segmentation"):
        lines = [json.loads(x) for x in (tmp_path / f"{stage}_log.jsonl").read_text().splitlines()]
        assert [line["iteration"] for line in lines] == [1, 2]
        assert all(math.isfinite(line["loss"]) for line in lines)
        assert load_checkpoint(tmp_path / "checkpoints" / stage)["iteration"] == 2
    assert "loss_mask" in lines[0]


def test_training_continues_from_its_checkpoint(make_run, tmp_path, coco_root):
    one_iteration = {**TINY_DETECTION, "max_iters": 1, "steps": [], "base_lr": 1e-4}
    cfg = make_run(tmp_path, eval={"detection": one_iteration})
    train = CocoDetection(coco_root, "train", masks=False, train=True)
    log_file, checkpoints = tmp_path / "log.jsonl", tmp_path / "checkpoints"
    options = {"seed": 0, "workers": 0, "device": torch.device("cpu"), "log_every": 1}
    conv1 = "backbone.body.conv1.weight"
    weights = []
    for max_iters in (1, 2):
        det = cfg.eval.detection.model_copy(update={"max_iters": max_iters})
        model = build_detector(build_backbone("resnet18"), "resnet18", 11, det, masks=False)
        weights.append(model.state_dict()[conv1].clone())  # a fresh initialisation
        train_detector(model, train, det, checkpoint_dir=checkpoints, log_file=log_file, **options)
        weights.append(model.state_dict()[conv1].clone())
    iterations = [json.loads(line)["iteration"] for line in log_file.read_text().splitlines()]
    assert iterations == [1, 2]  # the second call trained iteration 2 only
    assert load_checkpoint(checkpoints)["iteration"] == 2
    after_one, fresh, after_two = weights[1:]
    # iteration 2 continued from iteration 1's weights (a tiny step), not from a fresh network
    assert (after_two - after_one).abs().max() < 0.01 * (fresh - after_one).abs().max()


def test_lr_follows_the_detectron2_1x_schedule(make_run, tmp_path):
    det = make_run(tmp_path).eval.detection
    assert lr_at(0, det) == pytest.approx(0.02 * 0.001)
    assert lr_at(500, det) == pytest.approx(0.02 * (0.001 * 0.5 + 0.5))
    assert [lr_at(i, det) for i in (1000, 59999, 60000, 80000, 89999)] == pytest.approx(
        [0.02, 0.02, 0.002, 0.0002, 0.0002]
    )


def test_detection_refuses_a_vit_backbone(make_run, tmp_path):
    with pytest.raises(ConfigError, match=r"stages.*'segmentation' needs a CNN backbone"):
        make_run(tmp_path, backbone="vit_tiny", stages=["pretrain", "segmentation"])
    cfg = make_run(tmp_path, backbone="vit_tiny", eval={"detection": TINY_DETECTION})
    with pytest.raises(ValueError, match="needs a CNN backbone"):
        transfer(nn.Identity(), cfg, tmp_path, torch.device("cpu"), masks=False)


def test_a_schedule_step_beyond_max_iters_is_a_config_error(make_run, tmp_path):
    with pytest.raises(ConfigError, match=r"eval\.detection.*max_iters=100"):
        make_run(tmp_path, eval={"detection": {"max_iters": 100}})
