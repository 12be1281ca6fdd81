"""Tests of the batched multi-crop views: per-sample determinism, torchvision-equal maths,
parameter statistics and odd inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from sslight.data import (
    CropSpec,
    ImageBatch,
    MultiCropDataset,
    build_multicrop,
    build_train_loader,
    resolve_views_device,
    views_of_batch,
)
from sslight.data import batch_ops as ops
from sslight.data.batch_views import BatchedMultiCrop, ViewSpec
from sslight.data.sources import TensorImageSource

GLOBAL = CropSpec(number=2, size=32, scale=(0.3, 1.0))
LOCAL = CropSpec(number=3, size=16, scale=(0.05, 0.3))
JITTER_OPS = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)


def _images(count: int, size: int = 40, seed: int = 0) -> torch.Tensor:
    """Smooth colourful uint8 images (noise would make bicubic overshoot dominate)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 6, 6, generator=gen) * 255
    return F.resize(coarse, [size, size], antialias=True).round().clamp(0, 255).to(torch.uint8)


def _reference_view(image: torch.Tensor, params, v: int, spec: ViewSpec) -> torch.Tensor:
    """One view made with torchvision's functional ops from the drawn parameters, the crop
    resized and flipped on the uint8 image as torchvision v2's ``RandomResizedCrop`` does:
    float in [0, 1], before normalisation."""
    top, left, height, width = params.boxes[v].tolist()
    x = F.resized_crop(
        image,
        top,
        left,
        height,
        width,
        [spec.size, spec.size],
        interpolation=InterpolationMode.BICUBIC,
        antialias=True,
    )
    if params.flip[v]:
        x = F.horizontal_flip(x)
    x = F.to_dtype(x, torch.float32, scale=True)
    if params.jitter[v]:
        for op in params.order[v].tolist():
            x = JITTER_OPS[op](x, float(params.factors[v, op]))
    if params.gray[v]:
        x = F.rgb_to_grayscale(x, num_output_channels=3)
    if params.blur[v]:
        k = ops.blur_kernel_size(spec.size)
        x = F.gaussian_blur(x, [k, k], [float(params.sigma[v])] * 2)
    if params.solarize[v]:
        x = F.solarize(x, ops.SOLARIZE_THRESHOLD / 255)
    return x


def _sample(params, b: int):
    return type(params)(**{k: getattr(params, k)[b] for k in vars(params)})


@pytest.mark.parametrize("recipe", ["dino", "swav", "moco"])
def test_views_equal_torchvision_ops_with_the_drawn_parameters(recipe):
    """Each view is torchvision's, rounded to uint8 levels: within half a level, and a float
    difference of 2e-5 may tip a value that sits at a rounding boundary."""
    transform = build_multicrop(recipe, GLOBAL, LOCAL).batched
    images, seeds = _images(8), list(range(100, 108))
    views = transform.uint8_views(list(images), seeds)
    params = transform.draw(seeds, [40] * 8, [40] * 8)
    assert params.jitter.any() and params.gray.any() and params.flip.any()
    assert params.blur.any() and not params.blur.all()
    for b in range(8):
        for v, spec in enumerate(transform.specs):
            expected = _reference_view(images[b], _sample(params, b), v, spec) * 255
            assert views[v].dtype == torch.uint8
            assert (views[v][b].float() - expected).abs().max() <= 0.5 + 2e-5 * 255
    normalised = transform(list(images), seeds)
    mean = torch.tensor(ops.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(ops.IMAGENET_STD).view(1, 3, 1, 1)
    for view, levels in zip(normalised, views, strict=True):
        assert view.dtype == torch.float32
        torch.testing.assert_close(view, (levels / 255 - mean) / std, atol=1e-6, rtol=0)


def test_colour_ops_match_torchvision():
    x = torch.rand(5, 3, 12, 14)
    x[0, :, :2] = 0.5  # grey pixels: no hue
    factors = torch.tensor([0.6, 1.0, 1.4, 0.0, 1.9])
    hues = torch.tensor([-0.5, -0.1, 0.0, 0.07, 0.5])
    for ours, theirs, f in zip(ops.JITTER_OPS, JITTER_OPS, [factors] * 3 + [hues], strict=True):
        y = x.clone()
        ours(y, f)
        expected = torch.stack([theirs(x[i], float(f[i])) for i in range(5)])
        torch.testing.assert_close(y, expected, atol=2e-6, rtol=0)
    gray = F.rgb_to_grayscale(x, num_output_channels=1)
    torch.testing.assert_close(ops.grayscale(x), gray, atol=1e-6, rtol=0)
    torch.testing.assert_close(ops.solarize(x), F.solarize(x, 128 / 255))
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0])
    for k in (3, 9):
        expected = torch.stack(
            [F.gaussian_blur(x[i], [k, k], [float(sigma[i])] * 2) for i in range(5)]
        )
        torch.testing.assert_close(ops.gaussian_blur(x, sigma, k), expected, atol=1e-6, rtol=0)


def test_uint8_crops_round_the_float_resize():
    """The crops are resized in uint8, as torchvision v2 resizes uint8 images: each of the two
    separable passes rounds to whole 0-255 levels, so on smooth images a crop differs from the
    float resize of the same box by at most 1.5/255 (two half-level roundings and the kernel's
    fixed-point weights), 0.3/255 on average. Where bicubic overshoots past 0 or 255 (sharp
    edges), the first pass's clamp changes more, as in torchvision's and PIL's uint8 resize."""
    images = _images(4)
    boxes = [[0, 0, 0, 40, 40], [1, 3, 5, 30, 17], [2, 10, 2, 9, 13], [3, 0, 20, 40, 20]]
    for size in (16, 32, 64):
        crops = ops.resized_crops(list(images), boxes, [False, True, False, True], size)
        assert crops.dtype == torch.uint8 and crops.shape == (4, 3, size, size)
        for row, (b, top, left, height, width) in enumerate(boxes):
            box = images[b][None, :, top : top + height, left : left + width].float()
            floats = torch.nn.functional.interpolate(
                box, size=(size, size), mode="bicubic", antialias=True
            )[0].clamp(0, 255)
            floats = floats.flip(-1) if row % 2 else floats
            error = (crops[row].float() - floats).abs()
            assert error.max() <= 1.5 and error.mean() <= 0.5


def test_views_depend_only_on_the_sample_seed():
    transform = build_multicrop("dino", GLOBAL, LOCAL).batched
    images, seeds = list(_images(8)), [7 * i + 3 for i in range(8)]
    full = transform(images, seeds)
    picked = [5, 0, 2]
    alone = transform([images[i] for i in picked], [seeds[i] for i in picked])
    for whole, part in zip(full, alone, strict=True):
        assert torch.equal(whole[picked], part)
    again = transform(images, seeds)
    assert all(torch.equal(a, b) for a, b in zip(full, again, strict=True))
    other = transform(images, [s + 1 for s in seeds])
    assert not torch.equal(full[0], other[0])


def test_loader_batches_equal_the_per_sample_views():
    images = _images(16, size=32)
    source = TensorImageSource(images, torch.arange(16) % 4, [str(i) for i in range(4)])
    transform = build_multicrop("dino", GLOBAL, LOCAL)
    loader, sampler = build_train_loader(source, transform, batch_size=4, seed=3)
    sampler.set_epoch(1)
    keys = list(sampler)[4:8]
    sampler.set_start_batch(1)
    levels, labels = next(iter(loader))
    assert [tuple(v.shape) for v in levels] == [(4, 3, 32, 32)] * 2 + [(4, 3, 16, 16)] * 3
    assert all(v.dtype == torch.uint8 and v.is_contiguous() for v in levels)
    views = views_of_batch(levels, None, torch.device("cpu"))
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in views)
    dataset = MultiCropDataset(source, transform)
    for row, key in enumerate(keys):
        alone, label = dataset[key]
        assert label == int(labels[row])
        assert all(torch.equal(v[row], a) for v, a in zip(views, alone, strict=True))


def test_views_made_in_the_training_process_equal_the_workers():
    """``data.views_device``: workers that only decode, the training process making the views
    of each batch from its images and seeds, give the views the workers would have made."""
    images = _images(12, size=36)
    source = TensorImageSource(images, torch.arange(12) % 3, ["a", "b", "c"])
    transform = build_multicrop("dino", GLOBAL, LOCAL)
    batches = []
    for in_workers in (True, False):
        loader, sampler = build_train_loader(
            source, transform, 4, seed=5, num_workers=1, views_in_workers=in_workers
        )
        sampler.set_epoch(2)
        batches.append(list(loader))
    for (views, labels), (images_and_seeds, same_labels) in zip(*batches, strict=True):
        assert isinstance(images_and_seeds, ImageBatch)
        assert all(image.dtype == torch.uint8 for image in images_and_seeds.images)
        made = views_of_batch(images_and_seeds, transform.batched, torch.device("cpu"))
        assert torch.equal(labels, same_labels)
        normalised = views_of_batch(views, None, torch.device("cpu"))
        assert all(torch.equal(a, b) for a, b in zip(normalised, made, strict=True))
        assert views_of_batch(made, None, torch.device("cpu")) == made  # floats pass through


def test_views_device_follows_the_training_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 1)
    assert resolve_views_device("auto", cpu) == cpu and resolve_views_device("cpu", cpu) == cpu
    assert resolve_views_device("auto", cuda) == cuda and resolve_views_device("cuda", cuda) == cuda
    assert resolve_views_device("cpu", cuda) == cpu
    with pytest.raises(ValueError, match="views_device=cuda but training runs on cpu"):
        resolve_views_device("cuda", cpu)
    with pytest.raises(ValueError, match="multi-crop transform"):
        build_train_loader(
            TensorImageSource(_images(4), torch.zeros(4, dtype=torch.long), ["a"]),
            lambda im: [im],
            2,
            seed=0,
            views_in_workers=False,
        )


def test_plain_view_is_the_normalised_image():
    plain = ViewSpec(24, (1.0, 1.0), (0.4, 0.4, 0.2, 0.1), 0.0, 0.0, 0.0, 0.0, flip_p=0.0)
    images = _images(3, size=24)
    (view,) = BatchedMultiCrop([plain])(list(images), [1, 2, 3])
    mean = torch.tensor(ops.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(ops.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(view, (images.float() / 255 - mean) / std, atol=1e-5, rtol=0)


def test_dino_parameter_statistics():
    transform = build_multicrop("dino", GLOBAL, LOCAL).batched
    n = 4000
    p = transform.draw(range(n), [40] * n, [40] * n)
    rate = {
        k: getattr(p, k).double().mean(0) for k in ("flip", "jitter", "gray", "blur", "solarize")
    }
    tolerance = 4 * math.sqrt(0.25 / n)  # four standard errors at worst

    def near(values: torch.Tensor, expected: list[float]) -> bool:
        return bool((values - torch.tensor(expected, dtype=torch.float64)).abs().max() < tolerance)

    assert near(rate["flip"], [0.5] * 5)
    assert near(rate["jitter"], [0.8] * 5)
    assert near(rate["gray"], [0.2] * 5)
    assert near(rate["blur"], [1.0, 0.1, 0.5, 0.5, 0.5])
    assert near(rate["solarize"], [0.0, 0.2, 0.0, 0.0, 0.0])
    codes = (p.order * torch.tensor([64, 16, 4, 1])).sum(-1)[p.jitter]
    counts = codes.unique(return_counts=True)[1]
    assert len(counts) == 24 and counts.min() > 0.7 * len(codes) / 24  # every order, evenly
    first = p.order[..., 0][p.jitter].bincount(minlength=4).double() / len(codes)
    assert (first - 0.25).abs().max() < 4 * math.sqrt(0.25 * 0.75 / len(codes))  # unbiased
    brightness, hue = p.factors[..., 0], p.factors[..., 3]
    assert brightness.min() >= 0.6 and brightness.max() <= 1.4
    assert abs(brightness.mean() - 1) < 0.02
    assert hue.min() >= -0.1 and hue.max() <= 0.1 and p.factors[..., 2].min() >= 0.8
    assert p.sigma.min() >= 0.1 and p.sigma.max() <= 2.0
    top, left, height, width = p.boxes.unbind(-1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + height <= 40).all() and (left + width <= 40).all()
    area = (height * width).double() / 1600
    assert area[:, :2].min() > 0.25 and area[:, 2:].max() < 0.35  # scale ranges, rounding aside
    assert 0.25 < area[:, 2:].mean() / area[:, :2].mean() < 0.4
    ratio = (width / height).double()
    assert ratio.min() > 0.6 and ratio.max() < 1.6 and abs(ratio.log().mean()) < 0.02


def test_images_of_different_sizes_and_bad_input():
    transform = build_multicrop("moco", GLOBAL, LOCAL).batched
    images = [_images(1, size=s)[0] for s in (40, 20, 40)]
    images[1] = images[1][:, :, :13]  # 20 × 13: a tall image, as image_folder gives them
    views = transform(images, [1, 2, 3])
    assert [tuple(v.shape) for v in views] == [(3, 3, 32, 32)] * 2 + [(3, 3, 16, 16)] * 3
    alone = transform(images[1:2], [2])
    assert all(torch.equal(v[1:2], a) for v, a in zip(views, alone, strict=True))
    tiny = transform([torch.zeros(3, 2, 1, dtype=torch.uint8)], [0])  # smaller than the crops
    assert tiny[0].shape == (1, 3, 32, 32) and all(torch.isfinite(v).all() for v in tiny)
    with pytest.raises(ValueError, match="uint8 RGB"):
        transform([images[0].float()], [0])
    with pytest.raises(ValueError, match="uint8 RGB"):
        transform([images[0][:1]], [0])
    with pytest.raises(ValueError, match="2 images for 1 seeds"):
        transform(images[:2], [0])


def test_loader_takes_a_per_image_transform_too():
    """Any ``image -> views`` callable (linear evaluation's one augmented view) runs per sample."""
    images = _images(8, size=20)
    source = TensorImageSource(images, torch.arange(8) % 2, ["a", "b"])
    loader, sampler = build_train_loader(source, lambda im: [im.flip(-1)], batch_size=4, seed=1)
    (views,), labels = next(iter(loader))
    positions = [p for p, _ in sampler][:4]
    assert torch.equal(views, images[positions].flip(-1)) and labels.tolist() == [
        p % 2 for p in positions
    ]
